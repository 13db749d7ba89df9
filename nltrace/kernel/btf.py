"""BPF trampolines (fentry/fexit): whether the running kernel has them, and for
which catalogue functions, read from its BTF."""

import ctypes
import ctypes.util
import os
import platform
import re

from nltrace.catalogue import CATALOGUE, ONCE_PER_SOCKET

BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_KIND_ENUM, BTF_KIND_FUNC = 6, 12
# Built into kernels that have BPF trampolines (BCC looks for the same symbol).
TRAMPOLINE_FUNCTION = "bpf_trampoline_link_prog"
# The fentry/fexit programs read arguments and return values with these
# helpers (Linux 5.17); the kernel's BTF lists its helpers in enum bpf_func_id.
ARGUMENT_HELPERS = ("BPF_FUNC_get_func_arg", "BPF_FUNC_get_func_ret")


def trampoline_max_args(release):
    """x86-64's BPF trampoline took at most 6 arguments until Linux 6.6, 12
    since (more: ENOTSUPP when attaching)."""
    numbers = re.match(r"(\d+)\.(\d+)", release)
    return 12 if numbers and tuple(map(int, numbers.groups())) >= (6, 6) else 6


class _BtfType(ctypes.Structure):
    """struct btf_type (include/uapi/linux/btf.h): a FUNC's `type` is its
    prototype, whose vlen (the low 16 bits of info) counts the arguments; an
    ENUM's vlen counts the struct btf_enum entries that follow it."""
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("type", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


def read_btf(functions, enum):
    """From the running kernel's BTF, read with libbpf (the library BCC itself
    is built on): {name: number of arguments} for the names it describes as
    functions (fentry/fexit attach by BTF id), and the names of enum's
    enumerators. Raises OSError when libbpf or the BTF cannot be read."""
    path = ctypes.util.find_library("bpf")
    if not path:
        raise OSError("libbpf is not installed")
    libbpf = ctypes.CDLL(path, use_errno=True)
    libbpf.btf__load_vmlinux_btf.restype = ctypes.c_void_p
    libbpf.btf__find_by_name_kind.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    libbpf.btf__type_by_id.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    libbpf.btf__type_by_id.restype = ctypes.POINTER(_BtfType)
    libbpf.btf__name_by_offset.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    libbpf.btf__name_by_offset.restype = ctypes.c_char_p
    libbpf.btf__free.argtypes = (ctypes.c_void_p,)
    btf = libbpf.btf__load_vmlinux_btf()
    if not btf:
        raise OSError(ctypes.get_errno(), f"cannot read the kernel's BTF: {os.strerror(ctypes.get_errno())}")
    try:
        nargs = {}
        for name in functions:
            func = libbpf.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_FUNC)
            if func > 0:
                proto = libbpf.btf__type_by_id(btf, libbpf.btf__type_by_id(btf, func).contents.type)
                nargs[name] = proto.contents.info & 0xffff
        enumerators = set()
        type_id = libbpf.btf__find_by_name_kind(btf, enum.encode(), BTF_KIND_ENUM)
        if type_id > 0:
            head = libbpf.btf__type_by_id(btf, type_id)
            entries = ctypes.cast(ctypes.addressof(head.contents) + ctypes.sizeof(_BtfType),
                                  ctypes.POINTER(_BtfEnum))
            enumerators = {libbpf.btf__name_by_offset(btf, entries[i].name_off).decode()
                           for i in range(head.contents.info & 0xffff)}
        return nargs, enumerators
    finally:
        libbpf.btf__free(btf)


def fentry_check(symbols, release):
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
        nargs, helpers = read_btf(own_name + [TRAMPOLINE_FUNCTION], "bpf_func_id")
    except OSError as e:
        return frozenset(), f"{e}: kprobes only"
    if nargs.pop(TRAMPOLINE_FUNCTION, None) is None:
        return frozenset(), "the kernel has no BPF trampolines: kprobes only"
    lacking = [h.replace("BPF_FUNC_", "bpf_") for h in ARGUMENT_HELPERS if h not in helpers]
    if lacking:
        return frozenset(), (f"the kernel lacks {' and '.join(lacking)} (Linux 5.17), which nltrace's "
                             "fentry/fexit programs read arguments with: kprobes only")
    limit = trampoline_max_args(release)
    found = frozenset(name for name, n in nargs.items() if n <= limit)
    detail = (f"{len(found)} of {len(own_name)} traceable per-message catalogue functions get fentry/fexit "
              "when attached, whose return costs less than a kretprobe's (the socket life cycle's keep kprobes: "
              "their trampolines would slow the start)")
    over = sorted(name for name, n in nargs.items() if n > limit)
    if over:
        detail += f"; kprobes for {', '.join(over)} (more than the trampoline's {limit} arguments)"
    return found, detail
