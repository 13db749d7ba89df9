/* Shared helpers of the kernel programs (libbpf-tools keeps the same in
 * bits.bpf.h; BPF C links no library, so they are spelled out here once). */
#ifndef NLT_BITS_H
#define NLT_BITS_H

/* floor(log2(v)), 0 for 0: the log2 bucket of a duration. Branchless, so the
 * verifier sees one path. */
static __always_inline __u32 nlt_log2(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 nlt_log2l(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? nlt_log2(hi) + 32 : nlt_log2(v);
}

#endif /* NLT_BITS_H */
