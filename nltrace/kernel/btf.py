"""BPF trampolines (fentry/fexit): whether the running kernel has them, and for
which catalogue functions, read from its BTF."""

import ctypes
import ctypes.util
import os
import platform

from nltrace.catalogue import CATALOGUE, ONCE_PER_SOCKET

BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_KIND_FUNC = 12
# Built into kernels that have BPF trampolines (BCC looks for the same symbol).
TRAMPOLINE_FUNCTION = "bpf_trampoline_link_prog"
# x86-64's BPF trampoline took at most 6 arguments until Linux 6.6 (more:
# ENOTSUPP, as on the 6.1 kernel we test); functions with more keep kprobes.
TRAMPOLINE_MAX_ARGS = 6


class _BtfType(ctypes.Structure):
    """struct btf_type (include/uapi/linux/btf.h): a FUNC's `type` is its
    prototype, whose vlen (the low 16 bits of info) counts the arguments."""
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("type", ctypes.c_uint32)]


def btf_functions(names):
    """{name: number of arguments} for the names that the running kernel's
    BTF describes as functions (fentry/fexit attach by BTF id), read with
    libbpf, the library BCC itself is built on. Raises OSError when libbpf or
    the BTF cannot be read."""
    path = ctypes.util.find_library("bpf")
    if not path:
        raise OSError("libbpf is not installed")
    libbpf = ctypes.CDLL(path, use_errno=True)
    libbpf.btf__load_vmlinux_btf.restype = ctypes.c_void_p
    libbpf.btf__find_by_name_kind.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    libbpf.btf__type_by_id.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    libbpf.btf__type_by_id.restype = ctypes.POINTER(_BtfType)
    libbpf.btf__free.argtypes = (ctypes.c_void_p,)
    btf = libbpf.btf__load_vmlinux_btf()
    if not btf:
        raise OSError(ctypes.get_errno(), f"cannot read the kernel's BTF: {os.strerror(ctypes.get_errno())}")
    try:
        found = {}
        for name in names:
            func = libbpf.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_FUNC)
            if func > 0:
                proto = libbpf.btf__type_by_id(btf, libbpf.btf__type_by_id(btf, func).contents.type)
                found[name] = proto.contents.info & 0xffff
        return found
    finally:
        libbpf.btf__free(btf)


def fentry_check(symbols):
    """Which catalogue functions can be probed with fentry/fexit, and the
    check's detail. BPF trampolines exist on x86-64 only (BCC checks the
    same), and need the kernel's BTF, which also tells whether the kernel has
    them; a function qualifies when it is traced under its own name (not a
    compiler variant), BTF knows it, the trampoline takes its arguments, and
    it is called per message (catalogue.ONCE_PER_SOCKET keep kprobes)."""
    if platform.machine() != "x86_64":
        return frozenset(), f"no BPF trampolines on {platform.machine()}: kprobes only"
    if not os.path.exists(BTF_VMLINUX):
        return frozenset(), "no kernel BTF: kprobes only"
    own_name = [p.name for p in CATALOGUE if p.kind == "function" and symbols.get(p.name) == p.name
                and p.name not in ONCE_PER_SOCKET]
    try:
        nargs = btf_functions(own_name + [TRAMPOLINE_FUNCTION])
    except OSError as e:
        return frozenset(), f"{e}: kprobes only"
    if nargs.pop(TRAMPOLINE_FUNCTION, None) is None:
        return frozenset(), "the kernel has no BPF trampolines: kprobes only"
    found = frozenset(name for name, n in nargs.items() if n <= TRAMPOLINE_MAX_ARGS)
    detail = (f"{len(found)} of {len(own_name)} traceable per-message catalogue functions get fentry/fexit "
              "when attached, whose return costs less than a kretprobe's (the socket life cycle's keep kprobes: "
              "their trampolines would slow the start)")
    over = sorted(name for name, n in nargs.items() if n > TRAMPOLINE_MAX_ARGS)
    if over:
        detail += f"; kprobes for {', '.join(over)} (more than {TRAMPOLINE_MAX_ARGS} arguments)"
    return found, detail
