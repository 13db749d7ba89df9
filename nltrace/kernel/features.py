"""What the running kernel and this process allow: the facts behind `nltrace doctor`
and the checks `nltrace flow` makes before it tries to attach."""

import ctypes
import ctypes.util
import os
import platform
import re
from dataclasses import dataclass, field

from nltrace.catalogue import CATALOGUE

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

VM_HINT = ("This machine's kernel cannot run it; the bundled VM can: "
           "`make demo` shows nltrace flow on real traffic there, and "
           "`make vm CMD='sudo .venv/bin/nltrace flow'` runs your own command.")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed: bool = True      # flow cannot run without it


@dataclass
class Report:
    release: str
    arch: str
    checks: list = field(default_factory=list)
    symbols: dict = field(default_factory=dict)   # catalogue name -> symbol to attach, or None
    fentry: frozenset = frozenset()   # catalogue functions that can be probed with fentry/fexit

    @property
    def can_trace(self):
        return all(c.ok for c in self.checks if c.needed)

    def failed(self):
        return [c for c in self.checks if c.needed and not c.ok]


def tracefs_dir():
    for d in TRACEFS_DIRS:
        if os.path.exists(os.path.join(d, "available_events")):
            return d
    return None


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def kernel_symbols():
    """Names of the kernel's text symbols (kallsyms), or None if unreadable."""
    text = _read("/proc/kallsyms")
    if text is None:
        return None
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            names.add(parts[2])
    return names


def kallsyms_addresses(*names):
    """{name: address} of kernel symbols of any type (data too), 0 when
    absent, in one read of /proc/kallsyms."""
    found = dict.fromkeys(names, 0)
    for line in (_read("/proc/kallsyms") or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in found and not found[parts[2]]:
            found[parts[2]] = int(parts[0], 16)
    return found


def traceable_functions(tracefs):
    text = _read(os.path.join(tracefs, "available_filter_functions")) if tracefs else None
    if text is None:
        return None
    return {line.split()[0] for line in text.splitlines() if line}


def resolve_symbol(probe, traceable):
    """The symbol to attach for a catalogue function, or None if it cannot be traced.

    gcc renames functions it specialised (foo.isra.0, foo.constprop.0); such a
    variant is used only for probes that read no arguments, since the
    specialised copy may take different ones.
    """
    if probe.name in traceable:
        return probe.name
    if probe.reads_args:
        return None
    variant = re.compile(re.escape(probe.name) + r"\.(isra|constprop)\.\d+$")
    return next((s for s in sorted(traceable) if variant.match(s)), None)


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
    compiler variant), BTF knows it, and the trampoline takes its arguments."""
    if platform.machine() != "x86_64":
        return frozenset(), f"no BPF trampolines on {platform.machine()}: kprobes only"
    if not os.path.exists(BTF_VMLINUX):
        return frozenset(), "no kernel BTF: kprobes only"
    own_name = [p.name for p in CATALOGUE if p.kind == "function" and symbols.get(p.name) == p.name]
    try:
        nargs = btf_functions(own_name + [TRAMPOLINE_FUNCTION])
    except OSError as e:
        return frozenset(), f"{e}: kprobes only"
    if nargs.pop(TRAMPOLINE_FUNCTION, None) is None:
        return frozenset(), "the kernel has no BPF trampolines: kprobes only"
    found = frozenset(name for name, n in nargs.items() if n <= TRAMPOLINE_MAX_ARGS)
    detail = (f"{len(found)} of {len(own_name)} traceable catalogue functions get fentry/fexit "
              "when attached, whose return costs less than a kretprobe's")
    over = sorted(name for name, n in nargs.items() if n > TRAMPOLINE_MAX_ARGS)
    if over:
        detail += f"; kprobes for {', '.join(over)} (more than {TRAMPOLINE_MAX_ARGS} arguments)"
    return found, detail


def _capabilities():
    status = _read("/proc/self/status") or ""
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M)
    return int(m.group(1), 16) if m else 0


def probe(release=None):
    release = release or platform.release()
    report = Report(release=release, arch=platform.machine())
    checks = report.checks

    kprobe_events = any(os.path.exists(os.path.join(d, "kprobe_events")) for d in TRACEFS_DIRS)
    has_kprobes = os.path.isdir(KPROBE_PMU) or kprobe_events
    checks.append(Check(
        "kprobes", has_kprobes,
        "kprobe PMU or kprobe_events present" if has_kprobes
        else "no kprobe PMU and no kprobe_events: the kernel was built without CONFIG_KPROBES",
        "use a kernel with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y. " + VM_HINT))

    tracefs = tracefs_dir()
    checks.append(Check(
        "tracefs", tracefs is not None,
        f"mounted at {tracefs}" if tracefs else "not mounted",
        "mount -t tracefs nodev /sys/kernel/tracing"))

    btf = os.path.exists(BTF_VMLINUX)
    checks.append(Check("BTF", btf, BTF_VMLINUX + (" present" if btf else " missing"),
                        "not needed by the BCC path; the BMC path takes layouts from the vmlinux",
                        needed=False))

    headers = f"/lib/modules/{release}/build"
    has_headers = os.path.exists(os.path.join(headers, "include")) or os.path.exists("/sys/kernel/kheaders.tar.xz")
    checks.append(Check(
        "kernel headers", has_headers,
        headers + (" present" if has_headers else " missing"),
        f"apt-get install linux-headers-{release}  (BCC compiles against them)"))

    try:
        import bcc  # noqa: F401  (only whether it imports)
        bcc_ok, bcc_detail = True, "python3 bcc imports"
    except ImportError as e:
        bcc_ok, bcc_detail = False, f"cannot import bcc: {e}"
    checks.append(Check("BCC", bcc_ok, bcc_detail,
                        "apt-get install python3-bpfcc, and use a venv made with --system-site-packages"))

    caps = _capabilities()
    privileged = os.geteuid() == 0 or bool(caps & (1 << CAP_SYS_ADMIN)) or (
        caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON))
    checks.append(Check("privileges", bool(privileged),
                        "root" if os.geteuid() == 0 else f"uid {os.geteuid()}, CapEff {caps:#x}",
                        "run as root (sudo), or with CAP_BPF and CAP_PERFMON"))

    traceable = traceable_functions(tracefs)
    source = "available_filter_functions"
    if traceable is None:
        traceable, source = kernel_symbols(), "/proc/kallsyms"
    if traceable is None:
        checks.append(Check("catalogue functions", False,
                            "neither available_filter_functions nor /proc/kallsyms is readable",
                            "run as root"))
        return report
    for p in CATALOGUE:
        if p.kind == "raw_tracepoint":
            present = tracefs is not None and os.path.isdir(os.path.join(tracefs, "events", "netlink", p.name))
            report.symbols[p.name] = p.name if present or tracefs is None else None
        else:
            report.symbols[p.name] = resolve_symbol(p, traceable)
    found = sum(1 for s in report.symbols.values() if s)
    checks.append(Check("catalogue functions", found > 0,
                        f"{found} of {len(CATALOGUE)} traceable (from {source})",
                        "the kernel has none of the netlink functions nltrace traces"))
    report.fentry, detail = fentry_check(report.symbols)
    checks.append(Check("fentry/fexit", bool(report.fentry), detail,
                        "a kernel with CONFIG_DEBUG_INFO_BTF, on x86-64", needed=False))
    return report
