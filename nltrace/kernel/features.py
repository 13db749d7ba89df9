"""What the running kernel and this process allow: the checks `nltrace doctor`
reports, and that every live trace makes before it tries to attach."""

import os
import platform
import re
from dataclasses import dataclass, field

from nltrace.catalogue import CATALOGUE
from nltrace.kernel.btf import BTF_VMLINUX, fentry_check
from nltrace.kernel.symbols import (TRACEFS_DIRS, kernel_symbols, read_text, resolve_symbol,
                                    traceable_functions, tracefs_dir)

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"

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


def _capabilities():
    status = read_text("/proc/self/status") or ""
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
    report.fentry, detail = fentry_check(report.symbols, release)
    checks.append(Check("fentry/fexit", bool(report.fentry), detail,
                        "a kernel with CONFIG_DEBUG_INFO_BTF, on x86-64", needed=False))
    return report
