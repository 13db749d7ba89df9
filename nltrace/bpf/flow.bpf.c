/* nltrace flow: one record per netlink message, assembled in the kernel.
 *
 * The shared walk (tree.bpf.h) builds each thread's tree; when the root call
 * returns, the whole tree goes to user space as one ring buffer record, so
 * the cost per message is one copy, not two events per function.
 */
#include "tree.bpf.h"

#ifndef NLT_RINGBUF_PAGES
#define NLT_RINGBUF_PAGES 256
#endif

NLT_RINGBUF(events, NLT_RINGBUF_PAGES);

#ifdef NLT_BCC
static __always_inline int events_output(void *data, __u64 size)
{
	return events.ringbuf_output(data, size, BPF_RB_NO_WAKEUP);
}
#else
static __always_inline int events_output(void *data, __u64 size)
{
	return bpf_ringbuf_output(&events, data, size, BPF_RB_NO_WAKEUP);
}
#endif

static __always_inline void node_done(struct nlt_thread *t, __u32 func, __u64 ns) {}

/* The root returned: the whole tree goes to user space as one record. No
 * wakeup: the reader looks on its own timer, so a burst of messages costs the
 * kernel no wakeups (nltrace/sources/pacing.py). */
static __always_inline void tree_done(struct nlt_thread *t)
{
	__u32 n = t->rec.nr_nodes;
	__u64 size;

	if (n > NLT_MAX_NODES)
		n = NLT_MAX_NODES;
	size = sizeof(struct nlt_record) - sizeof(t->rec.nodes) + n * sizeof(struct nlt_node);
	if (t->rec.flags & NLT_REC_TRUNCATED)
		count(NLT_CNT_TRUNCATED);
	if (t->rec.flags & NLT_REC_INCOMPLETE)
		count(NLT_CNT_INCOMPLETE);
	if (events_output(&t->rec, size) < 0)
		count(NLT_CNT_LOST);
}
