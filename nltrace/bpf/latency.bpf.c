/* nltrace latency: log2 histograms of the tree walk's durations, kept in the
 * kernel.
 *
 * The shared walk (tree.bpf.h) builds each thread's tree; instead of a
 * record, each return adds its duration to log2 histograms in a per-CPU
 * hash, which user space reads once per interval; nothing is streamed.
 */
#include "tree.bpf.h"

#ifndef NLT_MAX_HIST_KEYS
#define NLT_MAX_HIST_KEYS 10240
#endif

NLT_PERCPU_HASH(hists, struct nlt_hist_key, __u64, NLT_MAX_HIST_KEYS);

#ifdef NLT_BCC
static __always_inline __u64 *hist_get(struct nlt_hist_key *key, __u64 *zero)
{
	return hists.lookup_or_try_init(key, zero);
}
#else
static __always_inline __u64 *hist_get(struct nlt_hist_key *key, __u64 *zero)
{
	bpf_map_update_elem(&hists, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&hists, key);
}
#endif

/* Does the tree pass the --protocol/--type filters? The message type is
 * known once netlink_unicast captured it. */
static __always_inline int tree_wanted(struct nlt_thread *t)
{
	__u64 protocol = config_get(NLT_CFG_PROTOCOL), type = config_get(NLT_CFG_TYPE);
	__u64 cmd = config_get(NLT_CFG_CMD);
	__u16 msg_type = 0;

	if (protocol && protocol - 1 != t->rec.protocol)
		return 0;
	if (!type && !cmd)
		return 1;
	if (t->rec.msg_len < 20 || (t->rec.flags & NLT_REC_SOCKET))
		return 0;
	__builtin_memcpy(&msg_type, t->rec.msg + 4, sizeof(msg_type));
	if (type && type - 1 != msg_type)
		return 0;
	return !cmd || cmd - 1 == t->rec.msg[16];
}

/* The message part of a key: protocol, type, and for genl the command and
 * family name. */
static __always_inline void message_key(struct nlt_hist_key *key, struct nlt_thread *t)
{
	key->protocol = t->rec.protocol;
	if (t->rec.msg_len < 16)
		return;
	__builtin_memcpy(&key->type, t->rec.msg + 4, sizeof(key->type));
	if (t->rec.protocol == 16 && t->rec.msg_len >= 20) {   /* NETLINK_GENERIC */
		key->cmd = t->rec.msg[16];
		__builtin_memcpy(key->name, t->rec.genl_family, sizeof(key->name));
	}
}

static __always_inline void hist_add(struct nlt_hist_key *key, __u64 ns)
{
	__u64 zero = 0, *v;

	key->slot = nlt_log2l(ns);
	v = hist_get(key, &zero);
	if (v)
		(*v)++;   /* per-CPU: no atomics, which the ARM32 JIT lacks */
	key->slot = NLT_SLOT_MAX;
	v = hist_get(key, &zero);
	if (v && *v < ns)
		*v = ns;
}

/* A call returned: its duration goes to the function's histogram, and
 * mutex_lock's (on rtnl_mutex: the wait for RTNL) to the message's. */
static __always_inline void node_done(struct nlt_thread *t, __u32 func, __u64 ns)
{
	struct nlt_hist_key key = {};

	if (!tree_wanted(t))
		return;
	key.kind = NLT_HIST_FUNCTION;
	key.func = func;
	hist_add(&key, ns);
	if (func != NLT_FN_mutex_lock)
		return;
	key.kind = NLT_HIST_RTNL;
	key.func = 0;
	message_key(&key, t);
	hist_add(&key, ns);
}

/* The root returned: a sent message's whole time, by message and by process. */
static __always_inline void tree_done(struct nlt_thread *t)
{
	struct nlt_hist_key key = {};
	struct nlt_node *root = &t->rec.nodes[0];

	if (!t->rec.nr_nodes || root->func != NLT_FN_netlink_sendmsg || !root->end_ns ||
	    !tree_wanted(t))
		return;
	key.kind = NLT_HIST_MESSAGE;
	message_key(&key, t);
	hist_add(&key, root->end_ns - root->start_ns);
	__builtin_memset(&key, 0, sizeof(key));
	key.kind = NLT_HIST_PROCESS;
	__builtin_memcpy(key.name, t->rec.comm, sizeof(key.name));
	hist_add(&key, root->end_ns - root->start_ns);
}
