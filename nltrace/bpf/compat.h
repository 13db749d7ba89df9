/* What differs between the two toolchains that compile the kernel programs:
 *   NLT_BCC defined:  BCC at run time on the machine being traced;
 *   otherwise:        clang ahead of time for a target (nltrace build).
 * Both take struct offsets the same way, as -DNLT_OFF_<struct>_<member>=N
 * and -DNLT_SIZE_<struct>_<member>=N, struct sizes as -DNLT_SIZEOF_<struct>=N
 * (see NLT_READ below). The program itself is written once, against the macros below. Map calls
 * cannot be macros (BCC rewrites map methods only outside macros), so
 * the programs keep their few map accessors in #ifdef NLT_BCC blocks. */
#ifndef NLT_COMPAT_H
#define NLT_COMPAT_H

#ifdef NLT_BCC

#include <uapi/linux/ptrace.h>

#define NLT_KPTR_SIZE sizeof(void *)

#define NLT_LRU_HASH(name, key_t, value_t, entries) \
	BPF_TABLE("lru_hash", key_t, value_t, name, entries)
#define NLT_ARRAY(name, value_t, entries) BPF_ARRAY(name, value_t, entries)
#define NLT_PERCPU_ARRAY(name, value_t, entries) BPF_PERCPU_ARRAY(name, value_t, entries)
#define NLT_PERCPU_HASH(name, key_t, value_t, entries) \
	BPF_TABLE("percpu_hash", key_t, value_t, name, entries)
#define NLT_RINGBUF(name, pages) BPF_RINGBUF_OUTPUT(name, pages)

#define NLT_KPROBE(name) int name(struct pt_regs *ctx)
#define NLT_KRETPROBE(name) int name(struct pt_regs *ctx)
#define NLT_RAW_TRACEPOINT(name) int name(struct bpf_raw_tracepoint_args *ctx)

/* Only the programs the run attaches are compiled: the loader passes
 * -DNLT_KPROBE_<fn>=0|1 and -DNLT_FENTRY_<fn>=0|1 for every catalogue
 * function, and at most one of them is 1 (unused programs made most of BCC's
 * compile: README.md, Overhead, startup). */
#define NLT_WHEN_0(...)
#define NLT_WHEN_1(...) __VA_ARGS__
#define NLT_WHEN_(flag) NLT_WHEN_##flag
#define NLT_WHEN(flag) NLT_WHEN_(flag)
#define NLT_KPROBE_PROGRAMS(fn, entry_body, exit_body) \
	NLT_WHEN(NLT_KPROBE_##fn)(NLT_KPROBE(enter_##fn) entry_body NLT_KRETPROBE(exit_##fn) exit_body)

/* fentry and fexit programs for fn, where the loader passed
 * -DNLT_FENTRY_<fn>=1. A
 * kretprobe's return goes through a trampoline and a shared pool of return
 * instances on every call; fexit's is a direct call from the function's BPF
 * trampoline (bench/README.md: bpftrace's program went from 0.37 to 0.63 of
 * the untraced rate). BCC names them kfunc__<fn>/kretfunc__<fn> and attaches
 * every one as it loads them, so only the wanted ones may exist. The return
 * is written first, for BCC to attach first if it keeps the source's order: a
 * call whose entry is seen without its return leaves its thread's state open
 * until the thread's next send or read. */
#define NLT_FENTRY_PROGRAMS(fn, entry_body, exit_body) \
	NLT_WHEN(NLT_FENTRY_##fn)(KRETFUNC_PROBE(fn) exit_body KFUNC_PROBE(fn) entry_body)

/* The probed function's n-th argument at its entry, and its return value,
 * read the way the program kind needs: from the registers (kprobe, kretprobe)
 * or from the trampoline's context (fentry, fexit; the helpers need not know
 * how many arguments the function takes on this kernel). */
static __always_inline __u64 nlt_regs_arg(struct pt_regs *ctx, int n)
{
	switch (n) {
	case 1: return PT_REGS_PARM1(ctx);
	case 2: return PT_REGS_PARM2(ctx);
	case 3: return PT_REGS_PARM3(ctx);
	case 4: return PT_REGS_PARM4(ctx);
	default: return PT_REGS_PARM5(ctx);
	}
}
static __always_inline __u64 nlt_trampoline_arg(unsigned long long *ctx, int n)
{
	__u64 v = 0;

	bpf_get_func_arg(ctx, n - 1, &v);
	return v;
}
static __always_inline __u64 nlt_regs_ret(struct pt_regs *ctx) { return PT_REGS_RC(ctx); }
static __always_inline __u64 nlt_trampoline_ret(unsigned long long *ctx)
{
	__u64 v = 0;

	bpf_get_func_ret(ctx, &v);
	return v;
}
#define NLT_ARG(n) ((void *)(unsigned long)_Generic((ctx), \
	struct pt_regs *: nlt_regs_arg, default: nlt_trampoline_arg)(ctx, n))
#define NLT_RET() ((long)_Generic((ctx), \
	struct pt_regs *: nlt_regs_ret, default: nlt_trampoline_ret)(ctx))

#else /* ahead of time, for a target (nltrace build): -DNLT_KPTR_SIZE=4 on ARM32 */

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#ifdef __TARGET_ARCH_arm
/* The ARM EABI passes a 5th argument on the stack, where it sits at sp on
 * entry; libbpf's PT_REGS_PARM5 reads r4, which holds something else. */
static __always_inline unsigned long nlt_arm_stack_arg0(const struct pt_regs *regs)
{
	__u32 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (void *)(unsigned long)regs->uregs[13]);
	return v;
}
#undef PT_REGS_PARM5
#define PT_REGS_PARM5(x) nlt_arm_stack_arg0(x)
#endif

#define __NLT_MAP(name, type_, key_t, value_t, entries) \
	struct { \
		__uint(type, type_); \
		__uint(max_entries, entries); \
		__type(key, key_t); \
		__type(value, value_t); \
	} name SEC(".maps")
#define NLT_LRU_HASH(name, key_t, value_t, entries) \
	__NLT_MAP(name, BPF_MAP_TYPE_LRU_HASH, key_t, value_t, entries)
#define NLT_ARRAY(name, value_t, entries) \
	__NLT_MAP(name, BPF_MAP_TYPE_ARRAY, __u32, value_t, entries)
#define NLT_PERCPU_ARRAY(name, value_t, entries) \
	__NLT_MAP(name, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, value_t, entries)
#define NLT_PERCPU_HASH(name, key_t, value_t, entries) \
	__NLT_MAP(name, BPF_MAP_TYPE_PERCPU_HASH, key_t, value_t, entries)
#define NLT_RINGBUF(name, pages) \
	struct { \
		__uint(type, BPF_MAP_TYPE_RINGBUF); \
		__uint(max_entries, (pages) * 4096); \
	} name SEC(".maps")

#define NLT_KPROBE(name) SEC("kprobe") int name(struct pt_regs *ctx)
#define NLT_KRETPROBE(name) SEC("kretprobe") int name(struct pt_regs *ctx)
#define NLT_RAW_TRACEPOINT(name) SEC("raw_tp") int name(struct bpf_raw_tracepoint_args *ctx)

/* Every function's kprobes are compiled: the agent picks what to attach on
 * the target. Targets without BPF trampolines (ARM32): kprobes only. */
#define NLT_KPROBE_PROGRAMS(fn, entry_body, exit_body) \
	NLT_KPROBE(enter_##fn) entry_body NLT_KRETPROBE(exit_##fn) exit_body
#define NLT_FENTRY_PROGRAMS(fn, entry_body, exit_body)
#define NLT_ARG(n) ((void *)(unsigned long)PT_REGS_PARM##n(ctx))
#define NLT_RET() ((long)PT_REGS_RC(ctx))

char LICENSE[] SEC("license") = "GPL";

#endif /* NLT_BCC */

/* Read one member of a kernel struct, by struct tag and member name. The
 * offsets come from the kernel the program will run on (its BTF or DWARF,
 * read by nltrace/kernel/layout.py, which also finds the members this file
 * reads by scanning for these two macros). Only a BCC build on a kernel
 * without BTF takes them from the kernel headers, at a much slower compile. */
#ifdef NLT_LAYOUT_FROM_HEADERS
#include <linux/skbuff.h>
#include <net/sock.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <linux/netlink.h>
#include <linux/version.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define NLT_HAVE_genl_split_ops 1   /* what layout.py finds in a kernel's BTF */
#endif
#define NLT_READ(dst, ptr, tag, member) \
	bpf_probe_read_kernel(&(dst), sizeof(((struct tag *)0)->member), \
			      &((struct tag *)(ptr))->member)
#define NLT_ADDR(ptr, tag, member) ((void *)&((struct tag *)(ptr))->member)
#define NLT_SIZEOF(tag) sizeof(struct tag)
#else
#define NLT_READ(dst, ptr, tag, member) \
	bpf_probe_read_kernel(&(dst), NLT_SIZE_##tag##_##member, \
			      (char *)(ptr) + NLT_OFF_##tag##_##member)
#define NLT_ADDR(ptr, tag, member) ((void *)((char *)(ptr) + NLT_OFF_##tag##_##member))
#define NLT_SIZEOF(tag) NLT_SIZEOF_##tag
#endif

#endif /* NLT_COMPAT_H */
