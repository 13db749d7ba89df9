"""What the running kernel's symbol tables say: kallsyms, tracefs's list of
traceable functions, and which symbol a catalogue function is probed at."""

import os
import re

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_dir():
    for d in TRACEFS_DIRS:
        if os.path.exists(os.path.join(d, "available_events")):
            return d
    return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def kernel_symbols():
    """Names of the kernel's text symbols (kallsyms), or None if unreadable."""
    text = read_text("/proc/kallsyms")
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
    for line in (read_text("/proc/kallsyms") or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in found and not found[parts[2]]:
            found[parts[2]] = int(parts[0], 16)
    return found


def traceable_functions(tracefs):
    text = read_text(os.path.join(tracefs, "available_filter_functions")) if tracefs else None
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
