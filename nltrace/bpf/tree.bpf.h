/* The tree walk that nltrace flow and nltrace latency share: thread state,
 * entry and return of every catalogue function, and what each captures.
 *
 * Every catalogue function has an entry and a return probe. On entry a node
 * is appended to the calling thread's record and pushed on its frame stack;
 * on return the node gets its end time and return value, and the mode's
 * node_done() sees it; when the root call returns, the mode's tree_done()
 * gets the whole tree (flow.bpf.c streams it, latency.bpf.c adds it to
 * histograms).
 *
 * A tree starts at netlink_sendmsg or netlink_recvmsg, or at a
 * netlink_unicast / netlink_broadcast that the kernel makes outside any tree
 * (notifications, kernel-originated messages). Threads are keyed by tid
 * because the sender can sleep (on the RTNL mutex, for instance) and move
 * between CPUs in the middle of a tree.
 *
 * BCC rewrites map calls only in the file it compiles, so its loader pastes
 * this header into the program's text (nltrace/bpf/__init__.py); clang
 * includes it as usual.
 */
#ifndef NLT_TREE_BPF_H
#define NLT_TREE_BPF_H

#include "compat.h"
#include "records.h"
#include "bits.h"

#ifndef NLT_MAX_THREADS
#define NLT_MAX_THREADS 4096
#endif

/* rtnetlink's dispatch table, as net/core/rtnetlink.c declares it. */
#define NLT_RTM_BASE 16
#define NLT_RTNL_FAMILY_MAX 129
#define NLT_RTM_NR_MSGTYPES 96
#define NLT_NLM_F_DUMP 0x300
#define NLT_RTNL_KIND_GET 2

#define NLT_NO_NODE 0xff
#define NLT_AF_NETLINK 16

struct nlt_thread {
	__u32 depth;                  /* open frames; 0 when no tree is in progress */
	__u32 skip;                   /* this tree is filtered out: count depth only */
	__u8 stack[NLT_MAX_DEPTH];    /* node index of each open frame */
	__u32 pad;
	__u64 genl_op;                /* genl_get_cmd's op, from its entry to its return */
	struct nlt_record rec;
};

NLT_LRU_HASH(threads, __u32, struct nlt_thread, NLT_MAX_THREADS);
NLT_ARRAY(zero_thread, struct nlt_thread, 1);
NLT_ARRAY(config, __u64, NLT_CFG_MAX);
NLT_PERCPU_ARRAY(counters, __u64, NLT_CNT_MAX);

/* Every access to the shared maps, once per toolchain. */
#ifdef NLT_BCC
static __always_inline struct nlt_thread *thread_lookup(__u32 *tid) { return threads.lookup(tid); }
static __always_inline struct nlt_thread *thread_create(__u32 *tid, struct nlt_thread *init)
{
	return threads.lookup_or_try_init(tid, init);
}
static __always_inline struct nlt_thread *zero_thread_get(__u32 *zero) { return zero_thread.lookup(zero); }
static __always_inline __u64 *config_lookup(__u32 *i) { return config.lookup(i); }
static __always_inline __u64 *counter_lookup(__u32 *i) { return counters.lookup(i); }
#else
static __always_inline struct nlt_thread *thread_lookup(__u32 *tid) { return bpf_map_lookup_elem(&threads, tid); }
static __always_inline struct nlt_thread *thread_create(__u32 *tid, struct nlt_thread *init)
{
	bpf_map_update_elem(&threads, tid, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(&threads, tid);
}
static __always_inline struct nlt_thread *zero_thread_get(__u32 *zero) { return bpf_map_lookup_elem(&zero_thread, zero); }
static __always_inline __u64 *config_lookup(__u32 *i) { return bpf_map_lookup_elem(&config, i); }
static __always_inline __u64 *counter_lookup(__u32 *i) { return bpf_map_lookup_elem(&counters, i); }
#endif

static __always_inline __u64 config_get(__u32 index)
{
	__u64 *v = config_lookup(&index);

	return v ? *v : 0;
}

static __always_inline void count(__u32 index)
{
	__u64 *c = counter_lookup(&index);

	if (c)
		(*c)++;   /* per-CPU: no atomics, which the ARM32 JIT lacks */
}

/* Read a kernel pointer of the kernel's own width (4 bytes on ARM32). */
static __always_inline __u64 read_kptr(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, NLT_KPTR_SIZE, (void *)addr);
	return v;
}

/* What each mode does with the walk (flow.bpf.c, latency.bpf.c): a call
 * returned (func, its duration), and the root returned. */
static __always_inline void node_done(struct nlt_thread *t, __u32 func, __u64 ns);
static __always_inline void tree_done(struct nlt_thread *t);

static __always_inline void start_tree(struct nlt_thread *t, __u64 pid_tgid)
{
	__u64 want = config_get(NLT_CFG_PID);
	__u64 comm_lo = config_get(NLT_CFG_COMM_LO), comm_hi = config_get(NLT_CFG_COMM_HI);
	__u64 comm[2] = {};

	t->depth = 0;
	t->skip = want && want != (pid_tgid >> 32);
#ifdef NLT_BCC
	/* BCC attaches fentry programs as it loads them, before the loader has
	 * written the filters above or attached the other probes: no tree
	 * starts until it says all is in place. (nltrace-agent configures first
	 * and attaches the roots last.) */
	t->skip |= !config_get(NLT_CFG_ARMED);
#endif
	if (!t->skip && (comm_lo || comm_hi)) {
		bpf_get_current_comm(comm, sizeof(comm));
		t->skip = comm[0] != comm_lo || comm[1] != comm_hi;
	}
	if (t->skip)
		return;
	t->rec.ts_ns = bpf_ktime_get_ns();
	t->rec.handler = 0;
	t->rec.skb = 0;
	t->rec.pid = pid_tgid >> 32;
	t->rec.tid = (__u32)pid_tgid;
	t->rec.error = 0;
	t->rec.protocol = 0xffff;
	t->rec.nr_nodes = 0;
	t->rec.msg_len = 0;
	t->rec.flags = 0;
	t->rec.msg_total_len = 0;
	t->rec.genl_family[0] = 0;
	t->rec.extack[0] = 0;
	bpf_get_current_comm(&t->rec.comm, sizeof(t->rec.comm));
}

/* The thread's tree in progress, or NULL (none, or filtered out). */
static __always_inline struct nlt_thread *current_tree(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct nlt_thread *t = thread_lookup(&tid);

	if (!t || !t->depth || t->skip)
		return 0;
	return t;
}

/* A node for func at depth, appended to t's record: its index, or
 * NLT_NO_NODE when the record is full (it is then marked truncated). */
static __always_inline __u32 append_node(struct nlt_thread *t, __u32 func, __u32 depth)
{
	__u32 idx = t->rec.nr_nodes;

	if (idx >= NLT_MAX_NODES) {
		t->rec.flags |= NLT_REC_TRUNCATED;
		return NLT_NO_NODE;
	}
	t->rec.nr_nodes = idx + 1;
	t->rec.nodes[idx].start_ns = bpf_ktime_get_ns();
	t->rec.nodes[idx].end_ns = 0;
	t->rec.nodes[idx].ret = 0;
	t->rec.nodes[idx].arg = 0;
	t->rec.nodes[idx].func = func;
	t->rec.nodes[idx].depth = depth;
	t->rec.nodes[idx].flags = 0;
	t->rec.nodes[idx].aux = 0;
	return idx;
}

/* Entry of a catalogue function. may_root: the function can start a tree.
 * Returns the thread's state when the call was recorded in a tree. */
static __always_inline struct nlt_thread *enter(__u32 func, int may_root)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct nlt_thread *t = thread_lookup(&tid);
	__u32 zero = 0, depth, idx;

	int fresh = !t || !t->depth;

	if (fresh && !may_root)
		return 0;
	/* A syscall-level root while a tree is open: a return was missed
	 * (kretprobe instances exhausted). The stale tree is counted as
	 * incomplete and dropped, not sent: the 32-bit ARM JIT of ARMv6 kernels
	 * compiles only programs of about 200 instructions or fewer (see
	 * nltrace-agent), and these two entries are the longest. For the same
	 * reason start_tree has one call site. */
	if (!fresh && may_root == 2 && !t->skip)
		count(NLT_CNT_INCOMPLETE);
	if (fresh || may_root == 2) {
		if (!t) {
			struct nlt_thread *init = zero_thread_get(&zero);

			if (!init)
				return 0;
			t = thread_create(&tid, init);
			if (!t)
				return 0;
		}
		start_tree(t, pid_tgid);
	}

	depth = t->depth;
	t->depth = depth + 1;
	if (t->skip || depth >= NLT_MAX_DEPTH)
		return 0;
	idx = append_node(t, func, depth);
	t->stack[depth] = idx;
	return idx < NLT_MAX_NODES ? t : 0;
}

/* Return of a catalogue function, with its return value. may_root: it can be
 * a tree's root, so its return can end the tree (a constant: the other
 * functions' programs leave tree_done out, which keeps them short). */
static __always_inline void leave(__u32 func, int may_root, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct nlt_thread *t = thread_lookup(&tid);
	__u32 d, idx = NLT_NO_NODE;

	if (!t || !t->depth)
		return;   /* the call began before we attached */
	d = t->depth - 1;
	if (!t->skip && d < NLT_MAX_DEPTH)
		idx = t->stack[d];
	if (idx < NLT_MAX_NODES && t->rec.nodes[idx].func == func) {
		t->rec.nodes[idx].end_ns = bpf_ktime_get_ns();
		t->rec.nodes[idx].ret = (int)ret;   /* every catalogue function returns int (or void) */
		node_done(t, func, t->rec.nodes[idx].end_ns - t->rec.nodes[idx].start_ns);
	} else if (func == NLT_FN_mutex_lock) {
		return;   /* it runs everywhere: only the calls enter() recorded are nodes */
	} else if (idx < NLT_MAX_NODES) {
		t->rec.flags |= NLT_REC_INCOMPLETE;   /* the return of an inner call was missed */
	}
	t->depth = d;
	if (may_root && !d && !t->skip)
		tree_done(t);
}

/* What the call just entered (enter() returned t) carries: its arg and its
 * number (aux; records.h says what they are for each function). */
static __always_inline void note(struct nlt_thread *t, __u64 arg, __u32 aux)
{
	__u32 idx = t->rec.nr_nodes - 1;

	if (idx < NLT_MAX_NODES) {
		t->rec.nodes[idx].arg = arg;
		t->rec.nodes[idx].aux = aux;
	}
}

/* A message's type, flags and seq (struct nlmsghdr bytes 4-11), as one word:
 * which message of a sendmsg's buffer a dispatch or an ack served. */
static __always_inline __u64 message_head(void *nlh)
{
	__u64 head = 0;

	bpf_probe_read_kernel(&head, sizeof(head), (char *)nlh + 4);
	return head;
}

static __always_inline void capture_protocol(struct nlt_thread *t, void *sk)
{
	__u16 protocol = 0xffff;

	if (t->rec.protocol != 0xffff || !sk)
		return;
	NLT_READ(protocol, sk, sock, sk_protocol);
	t->rec.protocol = protocol;
}

/* Keep the first message of the tree: the head of the skb's data. */
static __always_inline void capture_skb(struct nlt_thread *t, void *skb)
{
	__u64 data = 0;
	__u32 len = 0, size;

	if (t->rec.msg_len || !skb)
		return;
	NLT_READ(len, skb, sk_buff, len);
	data = read_kptr((__u64)NLT_ADDR(skb, sk_buff, data));
	if (!len || !data)
		return;
	/* The message's bytes only: what follows it in the skb head is not the sender's. */
	size = config_get(NLT_CFG_SNAPLEN);
	if (len < size)
		size = len;
	size = size < NLT_MSG_CAPTURE ? size : NLT_MSG_CAPTURE;
	/* The compiler passes the helper a copy the compares never bounded;
	 * hidden from it, a mask bounds the register the verifier checks. */
	asm volatile("" : "+r"(size));
	size &= 2 * NLT_MSG_CAPTURE - 1;
	if (bpf_probe_read_kernel(t->rec.msg, size, (void *)data))
		return;
	t->rec.msg_len = size;
	t->rec.msg_total_len = len;
	t->rec.skb = (__u64)skb;
}

/* The doit or dumpit that rtnetlink_rcv_msg() will call for this message,
 * looked up the way rtnl_get_link() does, in rtnl_msg_handlers. */
static __always_inline __u64 rtnl_handler(void *nlh)
{
	__u64 table = config_get(NLT_CFG_RTNL_HANDLERS);
	__u16 type = 0, flags = 0;
	__u8 family = 0;
	__u64 tab, link, fn = 0;
	int dump;

	if (!table)
		return 0;
	bpf_probe_read_kernel(&type, sizeof(type), (char *)nlh + 4);
	bpf_probe_read_kernel(&flags, sizeof(flags), (char *)nlh + 6);
	bpf_probe_read_kernel(&family, sizeof(family), (char *)nlh + 16);
	if (type < NLT_RTM_BASE || type - NLT_RTM_BASE >= NLT_RTM_NR_MSGTYPES)
		return 0;
	type -= NLT_RTM_BASE;
	dump = (type & 3) == NLT_RTNL_KIND_GET && (flags & NLT_NLM_F_DUMP);
	if (family > NLT_RTNL_FAMILY_MAX)
		family = 0;
	/* struct rtnl_link starts with doit, then dumpit. */
	for (int pass = 0; pass < 2 && !fn; pass++) {
		tab = read_kptr(table + family * NLT_KPTR_SIZE);
		if (!tab)
			tab = read_kptr(table);
		link = tab ? read_kptr(tab + type * NLT_KPTR_SIZE) : 0;
		if (link)
			fn = read_kptr(link + (dump ? NLT_KPTR_SIZE : 0));
		family = 0;
	}
	return fn;
}

/* The entry and return programs of a catalogue function, written once.
 * on_entry is what the entry does (it may read the function's arguments with
 * NLT_ARG(n)); the return closes the node. Each function gets a kprobe and a
 * kretprobe, enter_<fn> and exit_<fn>, or on the BCC path a fentry and a
 * fexit program, as the loader asks (compat.h). */
#define NLT_FUNCTION(fn, may_root, on_entry) \
	NLT_KPROBE_PROGRAMS(fn, { on_entry; return 0; }, \
			    { leave(NLT_FN_##fn, may_root, NLT_RET()); return 0; }) \
	NLT_FENTRY_PROGRAMS(fn, { on_entry; return 0; }, \
			    { leave(NLT_FN_##fn, may_root, NLT_RET()); return 0; })

/* A process's call on its socket starts a tree (may_root 2: a tree still
 * open on the thread is stale).
 * int netlink_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
 * int netlink_recvmsg(struct socket *sock, struct msghdr *msg, size_t len, int flags) */
static __always_inline void socket_call(__u32 func, int may_root, void *sock)
{
	struct nlt_thread *t = enter(func, may_root);
	void *sk = 0;

	if (t) {
		NLT_READ(sk, sock, socket, sk);
		capture_protocol(t, sk);
	}
}

NLT_FUNCTION(netlink_sendmsg, 1, socket_call(NLT_FN_netlink_sendmsg, 2, NLT_ARG(1)))
NLT_FUNCTION(netlink_recvmsg, 1,
	     socket_call(NLT_FN_netlink_recvmsg, config_get(NLT_CFG_SKIP_RECV) ? 0 : 2, NLT_ARG(1)))

/* Delivery of an skb; starts a tree of its own when the kernel sends on its
 * own, and captures the message. A unicast notes its skb and the portid it
 * goes to; a broadcast its group (each copy is its own __netlink_sendskb).
 * int netlink_unicast(struct sock *ssk, struct sk_buff *skb, u32 portid, int nonblock)
 * int netlink_broadcast(struct sock *ssk, struct sk_buff *skb, u32 portid, u32 group, gfp_t)
 * int netlink_broadcast_filtered(the same, then a filter and its data) */
static __always_inline void delivery(__u32 func, void *ssk, void *skb, __u64 skb_noted, __u32 aux)
{
	struct nlt_thread *t = enter(func, 1);

	if (t) {
		capture_protocol(t, ssk);
		capture_skb(t, skb);
		note(t, skb_noted, aux);
	}
}

NLT_FUNCTION(netlink_unicast, 1, delivery(NLT_FN_netlink_unicast, NLT_ARG(1), NLT_ARG(2),
					  (__u64)NLT_ARG(2), (unsigned long)NLT_ARG(3)))
NLT_FUNCTION(netlink_broadcast, 1, delivery(NLT_FN_netlink_broadcast, NLT_ARG(1), NLT_ARG(2),
					    0, (unsigned long)NLT_ARG(4)))
NLT_FUNCTION(netlink_broadcast_filtered, 1, delivery(NLT_FN_netlink_broadcast_filtered, NLT_ARG(1), NLT_ARG(2),
						     0, (unsigned long)NLT_ARG(4)))

/* int rtnetlink_rcv_msg(struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *) */
static __always_inline void rtnl_dispatch(void *nlh)
{
	struct nlt_thread *t = enter(NLT_FN_rtnetlink_rcv_msg, 0);

	if (!t)
		return;
	note(t, message_head(nlh), 0);
	if (!t->rec.handler)
		t->rec.handler = rtnl_handler(nlh);
}

NLT_FUNCTION(rtnetlink_rcv_msg, 0, rtnl_dispatch(NLT_ARG(2)))

/* The family and the handler of a generic netlink message.
 * int genl_family_rcv_msg_doit/dumpit(const struct genl_family *family,
 *	struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *extack,
 *	const struct genl_ops *ops, int hdrlen, struct net *net)
 * From 6.2 ops is a struct genl_split_ops, whose doit and dumpit sit at other
 * offsets (after pre_doit and start). */
static __always_inline void genl_dispatch(__u32 func, int dump, void *family, void *ops)
{
	struct nlt_thread *t = enter(func, 0);
	void *handler = 0;

	if (!t || t->rec.genl_family[0])
		return;
	NLT_READ(t->rec.genl_family, family, genl_family, name);
#ifdef NLT_HAVE_genl_split_ops
	if (dump)
		NLT_READ(handler, ops, genl_split_ops, dumpit);
	else
		NLT_READ(handler, ops, genl_split_ops, doit);
#else
	if (dump)
		NLT_READ(handler, ops, genl_ops, dumpit);
	else
		NLT_READ(handler, ops, genl_ops, doit);
#endif
	t->rec.handler = (__u64)handler;
}

NLT_FUNCTION(genl_family_rcv_msg_doit, 0,
	     genl_dispatch(NLT_FN_genl_family_rcv_msg_doit, 0, NLT_ARG(1), NLT_ARG(5)))
NLT_FUNCTION(genl_family_rcv_msg_dumpit, 0,
	     genl_dispatch(NLT_FN_genl_family_rcv_msg_dumpit, 1, NLT_ARG(1), NLT_ARG(5)))

/* Whether the tree's (first) message asks for a dump. */
static __always_inline int message_is_dump(struct nlt_thread *t)
{
	__u16 flags = 0;

	if (t->rec.msg_len >= 8)
		__builtin_memcpy(&flags, t->rec.msg + 6, sizeof(flags));
	return (flags & NLT_NLM_F_DUMP) == NLT_NLM_F_DUMP;
}

/* Where genl_family_rcv_msg_doit/dumpit are inlined (Debian's ARM 6.1
 * kernel), the family and handler come from the function that copies the
 * op genl_rcv_msg() dispatches to, the first such call in the tree:
 * void genl_op_from_full/small(const struct genl_family *family, unsigned int i,
 *			     struct genl_ops *op)
 * The handler's ops array entry is read directly; `op` is filled only later. */
static __always_inline void genl_op_found(void *family, __u64 i, int small)
{
	struct nlt_thread *t = current_tree();
	__u64 ops = 0, handler = 0;
	int dump;

	if (!t || t->rec.genl_family[0])
		return;
	NLT_READ(t->rec.genl_family, family, genl_family, name);
	dump = message_is_dump(t);
	if (small) {
		ops = read_kptr((__u64)NLT_ADDR(family, genl_family, small_ops));
		ops += i * NLT_SIZEOF(genl_small_ops);
		handler = dump ? read_kptr((__u64)NLT_ADDR(ops, genl_small_ops, dumpit))
			       : read_kptr((__u64)NLT_ADDR(ops, genl_small_ops, doit));
	} else {
		ops = read_kptr((__u64)NLT_ADDR(family, genl_family, ops));
		ops += i * NLT_SIZEOF(genl_ops);
		handler = dump ? read_kptr((__u64)NLT_ADDR(ops, genl_ops, dumpit))
			       : read_kptr((__u64)NLT_ADDR(ops, genl_ops, doit));
	}
	if (ops && !t->rec.handler)
		t->rec.handler = handler;
}

NLT_KPROBE(capture_genl_op_from_full) { genl_op_found(NLT_ARG(1), (unsigned long)NLT_ARG(2), 0); return 0; }
NLT_KPROBE(capture_genl_op_from_small) { genl_op_found(NLT_ARG(1), (unsigned long)NLT_ARG(2), 1); return 0; }

/* genl_rcv_msg's op lookup itself, where it calls no genl_op_from_* that can
 * be probed (5.10 on the AST2500: nlctrl's full ops, genl_op_from_full
 * inlined; 6.12: nlctrl's split ops): the family at its entry, the handler
 * from the op it filled, at its return. (The genl_op_from_* calls seen
 * there come later, from ctrl_fill_info walking the ops of the family a
 * request asked about.)
 * up to 6.1: int genl_get_cmd(u32 cmd, const struct genl_family *family, struct genl_ops *op)
 * from 6.2:  int genl_get_cmd(u32 cmd, u8 flags, const struct genl_family *family,
 *			       struct genl_split_ops *op)
 * The config says which (from 6.2 the kernel has genl_cmd_full_to_split). A
 * genl_split_ops begins with a union of { pre_doit, doit, post_doit } and
 * { start, dumpit, done }: its handler is the second pointer either way. */
static __always_inline void genl_cmd_lookup(void *arg2, void *arg3, void *arg4)
{
	struct nlt_thread *t = current_tree();
	int split = config_get(NLT_CFG_GENL_SPLIT_OPS) != 0;

	if (!t || t->rec.genl_family[0])
		return;
	NLT_READ(t->rec.genl_family, split ? arg3 : arg2, genl_family, name);
	t->genl_op = (__u64)(split ? arg4 : arg3);
}

static __always_inline void genl_cmd_found(long ret)
{
	struct nlt_thread *t = current_tree();
	__u64 op;

	if (!t || !t->genl_op)
		return;
	op = t->genl_op;
	t->genl_op = 0;
	if (ret || t->rec.handler)
		return;
	if (config_get(NLT_CFG_GENL_SPLIT_OPS))
		t->rec.handler = read_kptr(op + NLT_KPTR_SIZE);
	else
		t->rec.handler = read_kptr(message_is_dump(t) ? (__u64)NLT_ADDR(op, genl_ops, dumpit)
							      : (__u64)NLT_ADDR(op, genl_ops, doit));
}

NLT_KPROBE(capture_genl_get_cmd) { genl_cmd_lookup(NLT_ARG(2), NLT_ARG(3), NLT_ARG(4)); return 0; }
NLT_KRETPROBE(capture_ret_genl_get_cmd) { genl_cmd_found(NLT_RET()); return 0; }

/* void netlink_ack(struct sk_buff *in_skb, struct nlmsghdr *nlh, int err,
 *		    const struct netlink_ext_ack *extack)
 * The extack message goes back with the ack: read here, it is there on
 * kernels without the netlink:netlink_extack tracepoint (5.10). Its _msg is
 * the struct's first member in every kernel. */
static __always_inline void ack(void *nlh, int err, void *extack)
{
	struct nlt_thread *t = enter(NLT_FN_netlink_ack, 0);
	__u64 msg;

	if (t) {
		note(t, message_head(nlh), (__u32)err);
		if (err && !t->rec.error)
			t->rec.error = err;
		msg = extack && !t->rec.extack[0] ? read_kptr((__u64)extack) : 0;
		if (msg)
			bpf_probe_read_kernel_str(t->rec.extack, sizeof(t->rec.extack), (void *)msg);
	}
}

NLT_FUNCTION(netlink_ack, 0, ack(NLT_ARG(2), (int)(long)NLT_ARG(3), NLT_ARG(4)))

NLT_FUNCTION(netlink_unicast_kernel, 0, enter(NLT_FN_netlink_unicast_kernel, 0))
NLT_FUNCTION(rtnetlink_rcv, 0, enter(NLT_FN_rtnetlink_rcv, 0))
NLT_FUNCTION(genl_rcv, 0, enter(NLT_FN_genl_rcv, 0))
NLT_FUNCTION(netlink_rcv_skb, 0, enter(NLT_FN_netlink_rcv_skb, 0))
/* int genl_rcv_msg(struct sk_buff *skb, struct nlmsghdr *nlh, struct netlink_ext_ack *)
 * The genl header (its command first) follows the netlink header. */
static __always_inline void genl_message(void *nlh)
{
	struct nlt_thread *t = enter(NLT_FN_genl_rcv_msg, 0);
	__u8 cmd = 0;

	if (t) {
		bpf_probe_read_kernel(&cmd, sizeof(cmd), (char *)nlh + 16);
		note(t, message_head(nlh), cmd);
	}
}

NLT_FUNCTION(genl_rcv_msg, 0, genl_message(NLT_ARG(2)))
NLT_FUNCTION(netlink_dump, 0, enter(NLT_FN_netlink_dump, 0))
NLT_FUNCTION(nfnetlink_rcv_batch, 0, enter(NLT_FN_nfnetlink_rcv_batch, 0))
NLT_FUNCTION(netlink_sendskb, 0, enter(NLT_FN_netlink_sendskb, 0))
/* An skb queued on a user socket (the copy a reader will consume), or one
 * that did not fit in its buffer (the reader will read ENOBUFS instead), and
 * who that reader is: its portid (struct netlink_sock is private to
 * net/netlink, so a build from kernel headers cannot read it).
 * int __netlink_sendskb(struct sock *sk, struct sk_buff *skb)
 * void netlink_overrun(struct sock *sk) */
static __always_inline __u32 reader_portid(void *sk)
{
	__u32 portid = 0;

#ifndef NLT_LAYOUT_FROM_HEADERS
	NLT_READ(portid, sk, netlink_sock, portid);
#endif
	return portid;
}

static __always_inline void to_reader(__u32 func, void *sk, void *skb)
{
	struct nlt_thread *t = enter(func, 0);

	if (t)
		note(t, (__u64)skb, reader_portid(sk));
}

NLT_FUNCTION(__netlink_sendskb, 0, to_reader(NLT_FN___netlink_sendskb, NLT_ARG(1), NLT_ARG(2)))
NLT_FUNCTION(netlink_overrun, 0, to_reader(NLT_FN_netlink_overrun, NLT_ARG(1), 0))

/* void skb_queue_tail(struct sk_buff_head *list, struct sk_buff *newsk)
 * Where the kernel inlines __netlink_sendskb (5.10), each skb it queues is
 * seen here: inside a tree, queued on the receive queue of the netlink
 * socket that owns it (netlink_skb_set_owner_r() made it so just before).
 * Other queues (the audit queue, other sockets) fail that test. Recorded as
 * an inlined __netlink_sendskb node: no duration, no return. */
NLT_KPROBE(capture_skb_queue_tail)
{
	struct nlt_thread *t = current_tree();
	void *skb = NLT_ARG(2);
	char *sk = (char *)NLT_ARG(1) - (unsigned long)NLT_ADDR(0, sock, sk_receive_queue);
	__u16 family = 0;
	__u32 idx;

	if (!t || t->depth >= NLT_MAX_DEPTH)
		return 0;
	NLT_READ(family, sk, sock_common, skc_family);
	if (family != NLT_AF_NETLINK || read_kptr((__u64)NLT_ADDR(skb, sk_buff, sk)) != (__u64)(unsigned long)sk)
		return 0;
	idx = append_node(t, NLT_FN___netlink_sendskb, t->depth);
	if (idx < NLT_MAX_NODES) {
		t->rec.nodes[idx].flags = NLT_NODE_INLINED;
		note(t, (__u64)skb, reader_portid(sk));
	}
	return 0;
}

/* A socket's life. Each of these trees holds no message but its socket's
 * facts (struct nlt_socket in msg[]), written by the root only: netlink_release
 * also runs inside netlink_kernel_release, and __netlink_create inside both
 * creations. */
static __always_inline struct nlt_socket *facts_of(struct nlt_thread *t)
{
	return (struct nlt_socket *)t->rec.msg;
}

static __always_inline struct nlt_thread *socket_root(__u32 func, void *sock)
{
	struct nlt_thread *t = enter(func, 1);
	void *sk = 0;

	if (!t || t->rec.nr_nodes != 1)
		return 0;
	t->rec.flags |= NLT_REC_SOCKET;
	t->rec.msg_len = sizeof(struct nlt_socket);
	__builtin_memset(facts_of(t), 0, sizeof(struct nlt_socket));
	facts_of(t)->sock = (__u64)sock;
	if (sock) {
		NLT_READ(sk, sock, socket, sk);
		capture_protocol(t, sk);
	}
	return t;
}

static __always_inline __u32 netns_inum(void *net)
{
	void *ns = NLT_ADDR(net, net, ns);
	__u32 inum = 0;

	NLT_READ(inum, ns, ns_common, inum);
	return inum;
}

/* int netlink_create(struct net *net, struct socket *sock, int protocol, int kern) */
static __always_inline void socket_created(void *net, void *sock, long protocol, long kern)
{
	struct nlt_thread *t = socket_root(NLT_FN_netlink_create, sock);

	if (t) {
		t->rec.protocol = protocol;
		facts_of(t)->netns = netns_inum(net);
		facts_of(t)->kern = kern;
	}
}

/* int netlink_bind(struct socket *sock, struct sockaddr *addr, int addr_len)
 * int netlink_connect(struct socket *sock, struct sockaddr *addr, int alen, int flags)
 * addr is the kernel's copy of the caller's struct sockaddr_nl: family,
 * pad, nl_pid at 4, nl_groups at 8. */
static __always_inline void socket_addressed(__u32 func, void *sock, void *addr)
{
	struct nlt_thread *t = socket_root(func, sock);

	if (t) {
		bpf_probe_read_kernel(&facts_of(t)->portid, sizeof(__u32), (char *)addr + 4);
		bpf_probe_read_kernel(&facts_of(t)->groups, sizeof(__u32), (char *)addr + 8);
	}
}

/* int netlink_release(struct socket *sock)
 * The portid the socket frees, if it was bound: readers of its messages are gone. */
static __always_inline void socket_released(void *sock)
{
	struct nlt_thread *t = socket_root(NLT_FN_netlink_release, sock);
	void *sk = 0;
	__u8 bound = 0;

	if (!t || !sock)
		return;
#ifndef NLT_LAYOUT_FROM_HEADERS
	NLT_READ(sk, sock, socket, sk);
	if (!sk)
		return;
	/* a bind that failed with EADDRINUSE left the portid it asked for, unbound */
	NLT_READ(bound, sk, netlink_sock, bound);
	if (bound)
		NLT_READ(facts_of(t)->portid, sk, netlink_sock, portid);
#endif
}

/* struct sock *__netlink_kernel_create(struct net *net, int unit,
 *	struct module *module, struct netlink_kernel_cfg *cfg)
 * The cfg names the socket's input function (kept as the tree's handler). */
static __always_inline void kernel_socket_created(void *net, long unit, void *cfg)
{
	struct nlt_thread *t = socket_root(NLT_FN___netlink_kernel_create, 0);
	void *input = 0;

	if (!t)
		return;
	t->rec.protocol = unit;
	facts_of(t)->netns = netns_inum(net);
	if (cfg) {
		NLT_READ(facts_of(t)->groups, cfg, netlink_kernel_cfg, groups);
		NLT_READ(input, cfg, netlink_kernel_cfg, input);
	}
	t->rec.handler = (__u64)input;
}

/* void netlink_kernel_release(struct sock *sk)
 * struct sock starts with its struct sock_common, which holds its namespace. */
static __always_inline void kernel_socket_released(void *sk)
{
	struct nlt_thread *t = socket_root(NLT_FN_netlink_kernel_release, 0);
	void *net = 0;

	if (!t || !sk)
		return;
	capture_protocol(t, sk);
	NLT_READ(net, sk, sock_common, skc_net);
	facts_of(t)->netns = net ? netns_inum(net) : 0;
}

/* A node's number: netlink_insert(struct sock *sk, u32 portid) the portid
 * the socket gets; genl_bind(struct net *net, int group) the group joined. */
static __always_inline void numbered(__u32 func, __u32 number)
{
	struct nlt_thread *t = enter(func, 0);

	if (t)
		note(t, 0, number);
}

NLT_FUNCTION(netlink_create, 1, socket_created(NLT_ARG(1), NLT_ARG(2), (long)NLT_ARG(3), (long)NLT_ARG(4)))
NLT_FUNCTION(__netlink_create, 0, enter(NLT_FN___netlink_create, 0))
NLT_FUNCTION(netlink_bind, 1, socket_addressed(NLT_FN_netlink_bind, NLT_ARG(1), NLT_ARG(2)))
NLT_FUNCTION(netlink_connect, 1, socket_addressed(NLT_FN_netlink_connect, NLT_ARG(1), NLT_ARG(2)))
NLT_FUNCTION(netlink_release, 1, socket_released(NLT_ARG(1)))
NLT_FUNCTION(netlink_autobind, 0, enter(NLT_FN_netlink_autobind, 0))
NLT_FUNCTION(netlink_insert, 0, numbered(NLT_FN_netlink_insert, (unsigned long)NLT_ARG(2)))
NLT_FUNCTION(genl_bind, 0, numbered(NLT_FN_genl_bind, (unsigned long)NLT_ARG(2)))
NLT_FUNCTION(__netlink_kernel_create, 1, kernel_socket_created(NLT_ARG(1), (long)NLT_ARG(2), NLT_ARG(4)))
NLT_FUNCTION(netlink_kernel_release, 1, kernel_socket_released(NLT_ARG(1)))

/* The RTNL wait. rtnl_lock() is inlined into rtnetlink_rcv_msg, so the probe
 * sits on mutex_lock(struct mutex *) and records only calls on rtnl_mutex,
 * inside a recorded tree (leave() closes only those). mutex_lock runs
 * everywhere: it is attached on demand (latency --by rtnl). */
static __always_inline void rtnl_wait(void *lock)
{
	if ((__u64)lock == config_get(NLT_CFG_RTNL_MUTEX) && current_tree())
		enter(NLT_FN_mutex_lock, 0);
}

NLT_FUNCTION(mutex_lock, 0, rtnl_wait(NLT_ARG(1)))

/* Not a tree node: the skb a netlink_recvmsg copied to the reader, as it
 * lets go of it: the message it read, and the skb that links the read to
 * the tree that queued it. Not the skb's destructor: while the sender of a
 * broadcast still holds its reference, the destructor runs in the sender.
 * void skb_free_datagram(struct sock *sk, struct sk_buff *skb) */
NLT_KPROBE(capture_skb_free_datagram)
{
	struct nlt_thread *t = current_tree();

	if (t && t->rec.nodes[0].func == NLT_FN_netlink_recvmsg)
		capture_skb(t, NLT_ARG(2));
	return 0;
}

/* The extack message a handler sets (NL_SET_ERR_MSG), raised by the
 * netlink:netlink_extack tracepoint in the sender's context. */
NLT_RAW_TRACEPOINT(capture_netlink_extack)
{
	struct nlt_thread *t = current_tree();

	if (t && !t->rec.extack[0])
		bpf_probe_read_kernel_str(t->rec.extack, sizeof(t->rec.extack),
					  (void *)ctx->args[0]);
	return 0;
}

#endif /* NLT_TREE_BPF_H */
