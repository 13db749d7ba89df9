/* The record layout shared by the kernel programs and user space.
 *
 * This file is the single definition: the kernel programs include it, and Python
 * (nltrace/records.py) hands it to cffi's cdef, so it holds only
 * what cffi parses: integer #defines, enums and structs of fixed-width
 * types. Every field has a fixed size and the structs have no implicit
 * padding, so the layout is the same on x86-64 and on 32-bit ARM.
 */

#define NLT_STREAM_VERSION 3
#define NLT_COMM_LEN 16
#define NLT_GENL_NAMSIZ 16
#define NLT_EXTACK_LEN 80
#define NLT_MSG_CAPTURE 256   /* a batch of a few requests whole (nft's: begin, table, chains, end) */
#define NLT_SNAPLEN_MIN 16    /* --snaplen: a netlink header at least */
#define NLT_MAX_NODES 24
#define NLT_MAX_DEPTH 12

/* The probe catalogue: each kernel function nltrace traces has one id.
 * The name after NLT_FN_ is the kernel function's name. */
enum nlt_func {
	NLT_FN_netlink_sendmsg = 1,
	NLT_FN_netlink_recvmsg = 2,
	NLT_FN_netlink_unicast = 3,
	NLT_FN_netlink_unicast_kernel = 4,
	NLT_FN_rtnetlink_rcv = 5,
	NLT_FN_genl_rcv = 6,
	NLT_FN_netlink_rcv_skb = 7,
	NLT_FN_rtnetlink_rcv_msg = 8,
	NLT_FN_genl_rcv_msg = 9,
	NLT_FN_genl_family_rcv_msg_doit = 10,
	NLT_FN_genl_family_rcv_msg_dumpit = 11,
	NLT_FN_netlink_dump = 12,
	NLT_FN_netlink_broadcast = 13,
	NLT_FN_netlink_sendskb = 14,
	NLT_FN___netlink_sendskb = 15,
	NLT_FN_netlink_ack = 16,
	NLT_FN_mutex_lock = 17,      /* only calls that take rtnl_mutex */
	/* a socket's life: socket(), bind(), connect(), close(), the kernel's own */
	NLT_FN_netlink_create = 18,
	NLT_FN___netlink_create = 19,
	NLT_FN_netlink_bind = 20,
	NLT_FN_netlink_connect = 21,
	NLT_FN_netlink_release = 22,
	NLT_FN_netlink_autobind = 23,
	NLT_FN_netlink_insert = 24,
	NLT_FN_genl_bind = 25,
	NLT_FN___netlink_kernel_create = 26,
	NLT_FN_netlink_kernel_release = 27,
	NLT_FN_netlink_overrun = 28,  /* a copy dropped: the receiver's buffer is full (ENOBUFS) */
	NLT_FN_nfnetlink_rcv_batch = 29,  /* module nfnetlink: an nftables batch, one transaction */
	NLT_FN_netlink_broadcast_filtered = 30,  /* where the kernel has it: every broadcast passes it */
	NLT_FN_MAX = 31,
};

/* nlt_record.flags */
#define NLT_REC_TRUNCATED 1      /* more calls than NLT_MAX_NODES, or deeper than NLT_MAX_DEPTH */
#define NLT_REC_INCOMPLETE 2     /* a return was never seen (kretprobe missed) */
#define NLT_REC_SOCKET 4         /* a socket's tree: msg holds a struct nlt_socket, not a message */

/* nlt_node.flags */
#define NLT_NODE_INLINED 1       /* the kernel inlines this function: seen at a call inside it
				  * (its stand-in probe), so it has no duration and no return */

/* Indexes of the config array that user space fills before attaching. */
enum nlt_config {
	NLT_CFG_PID = 0,             /* trace only this tgid (0: all) */
	NLT_CFG_RTNL_HANDLERS = 1,   /* address of rtnl_msg_handlers (0: unknown) */
	NLT_CFG_SKIP_RECV = 2,       /* do not start trees at netlink_recvmsg */
	NLT_CFG_COMM_LO = 3,         /* trace only this comm: its first 8 bytes ... */
	NLT_CFG_COMM_HI = 4,         /* ... and its last 8 (both 0: all) */
	NLT_CFG_PROTOCOL = 5,        /* latency: only this protocol + 1 (0: all) */
	NLT_CFG_TYPE = 6,            /* latency: only this nlmsg_type + 1 (0: all) */
	NLT_CFG_CMD = 7,             /* latency: only this genl cmd + 1 (0: all) */
	NLT_CFG_RTNL_MUTEX = 8,      /* address of rtnl_mutex */
	NLT_CFG_ARMED = 9,           /* BCC: set once every probe is attached and configured */
	NLT_CFG_GENL_SPLIT_OPS = 10, /* address of genl_cmd_full_to_split: genl_get_cmd's 6.2+ arguments */
	NLT_CFG_SNAPLEN = 11,        /* capture at most this many bytes of a message (<= NLT_MSG_CAPTURE) */
	NLT_CFG_MAX = 12,
};

/* Indexes of the per-CPU counter array. */
enum nlt_counter {
	NLT_CNT_LOST = 0,            /* records the ring buffer had no room for */
	NLT_CNT_TRUNCATED = 1,
	NLT_CNT_INCOMPLETE = 2,
	NLT_CNT_MAX = 3,
};

/* One call of a catalogue function inside a tree, in call order (pre-order);
 * depth 0 is the root. end_ns is 0 when the return was not seen. */
struct nlt_node {
	__u64 start_ns;
	__u64 end_ns;
	__s64 ret;
	__u64 arg;                   /* netlink_unicast, __netlink_sendskb: the skb delivered (the
				      * read that consumes it names it too: a link);
				      * rtnetlink_rcv_msg, genl_rcv_msg, netlink_ack: the header of
				      * the message it serves, bytes 4-11 (type, flags, seq) */
	__u8 func;
	__u8 depth;
	__u16 flags;                 /* NLT_NODE_* */
	__u32 aux;                   /* netlink_ack: the errno it reports; genl_rcv_msg: the
				      * command; netlink_insert: the
				      * portid given; genl_bind, netlink_broadcast(_filtered): the group;
				      * netlink_unicast, __netlink_sendskb, netlink_overrun: the
				      * receiver's portid */
};

/* What a socket's tree (NLT_REC_SOCKET) knows of its socket, kept in msg[]:
 * from the root's arguments (socket(), bind(), connect(), close(), or the
 * kernel creating one of its own sockets). */
struct nlt_socket {
	__u64 sock;                  /* the struct socket: ties one socket's trees together (0: kernel) */
	__u32 portid;                /* bind, connect: the nl_pid asked for; close: the socket's */
	__u32 groups;                /* bind: nl_groups; a kernel socket: its number of groups */
	__u32 netns;                 /* netlink_create, kernel sockets: the namespace's inode number */
	__u32 kern;                  /* netlink_create: created by the kernel */
};

/* One tree: everything the kernel did for one root call on one thread. */
struct nlt_record {
	__u64 ts_ns;                 /* CLOCK_MONOTONIC at the root's entry */
	__u64 handler;               /* kernel address of the doit/dumpit that served the message */
	__u64 skb;                   /* address of the skb the message was captured from */
	__u32 pid;
	__u32 tid;
	__s32 error;                 /* the errno netlink_ack reported (negative), 0 if none */
	__u16 protocol;              /* sk_protocol of the root's socket, 0xffff if unknown */
	__u16 nr_nodes;
	__u16 msg_len;               /* bytes of msg[] that hold the message */
	__u16 flags;                 /* NLT_REC_* */
	__u32 msg_total_len;         /* the skb's length */
	char comm[NLT_COMM_LEN];
	char genl_family[NLT_GENL_NAMSIZ];
	char extack[NLT_EXTACK_LEN];
	__u8 msg[NLT_MSG_CAPTURE];
	struct nlt_node nodes[NLT_MAX_NODES];
};

/* nltrace latency: log2 histograms kept in a per-CPU hash, keyed by what
 * they group. Bucket slot k counts durations in [2^k, 2^(k+1)) ns; the entry
 * with slot NLT_SLOT_MAX holds the largest duration instead of a count. */
#define NLT_HIST_SLOTS 64
#define NLT_SLOT_MAX 0xffff

enum nlt_hist_kind {
	NLT_HIST_FUNCTION = 1,       /* each catalogue function's duration */
	NLT_HIST_MESSAGE = 2,        /* a sent message: its whole netlink_sendmsg */
	NLT_HIST_PROCESS = 3,        /* the same, by the sender's comm */
	NLT_HIST_RTNL = 4,           /* mutex_lock(&rtnl_mutex): the wait for RTNL, by message */
};

struct nlt_hist_key {
	__u32 kind;
	__u32 slot;
	__u32 func;                  /* FUNCTION */
	__u16 protocol;              /* MESSAGE, RTNL */
	__u16 type;                  /* MESSAGE, RTNL: nlmsg_type */
	__u32 cmd;                   /* MESSAGE, RTNL: genl command */
	char name[NLT_COMM_LEN];     /* PROCESS: comm; MESSAGE, RTNL: genl family */
};

/* The nltrace stream (nltrace record, nltrace-agent): the magic "NLTRACE\0",
 * then frames of struct nlt_frame followed by `length` payload bytes, all
 * little-endian. HEADER, SYMBOLS and COUNTERS payloads are JSON; RECORD is
 * one struct nlt_record (without its unused nodes); HISTOGRAMS is one
 * struct nlt_hist_head and its entries, cumulative counts summed over CPUs
 * (the max entries, slot NLT_SLOT_MAX, cover the time since the last frame). */
enum nlt_frame_kind {
	NLT_FRAME_HEADER = 1,
	NLT_FRAME_RECORD = 2,
	NLT_FRAME_SYMBOLS = 3,
	NLT_FRAME_COUNTERS = 4,
	NLT_FRAME_HISTOGRAMS = 5,
};

struct nlt_frame {
	__u8 kind;
	__u8 pad[3];
	__u32 length;
};

struct nlt_hist_head {
	__u64 ts_ns;                 /* CLOCK_MONOTONIC when the maps were read */
	__u32 nr_entries;
	__u32 pad;
};

struct nlt_hist_entry {
	struct nlt_hist_key key;
	__u32 pad;
	__u64 value;
};
