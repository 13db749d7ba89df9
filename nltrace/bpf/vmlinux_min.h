/* The few kernel types an ahead-of-time build needs (compat.h includes this
 * when NLT_BCC is not defined), in place of a generated vmlinux.h: the
 * target kernel has no BTF to generate one from, and the program reads
 * kernel structs only through offsets passed on the command line.
 * The uapi BPF definitions are the same on every architecture. */
#ifndef NLT_VMLINUX_MIN_H
#define NLT_VMLINUX_MIN_H

#include <linux/types.h>
#include <linux/bpf.h>

/* Tell bpf_tracing.h that struct pt_regs is the kernel's, not the uapi one. */
#define __VMLINUX_H__

#if defined(__TARGET_ARCH_arm)
/* The kernel's `long uregs[18]`: 32-bit members, since long is 8 bytes in BPF C. */
struct pt_regs {
	__u32 uregs[18];
};
#elif defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#else
#error "nltrace build knows the pt_regs of arm and x86 only"
#endif

#endif /* NLT_VMLINUX_MIN_H */
