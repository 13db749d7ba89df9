"""kprobe_events: the kprobes a killed nltrace left in tracefs, removed by the next run.

BCC makes a kretprobe with maxactive through tracefs, named
r_<function>_bcc_<pid>; it removes it at exit, but a kill -9 leaves it
there until reboot. nltrace-agent cleans its own (agent/kprobe_events.c).
"""

import os
import re

from nltrace.kernel.symbols import tracefs_dir

# r512:kprobes/r_genl_family_rcv_msg_doit_bcc_1234 genl_family_rcv_msg_doit
BCC_EVENT = re.compile(r"^[pr]\d*:(\S+/[pr]_(\w+)_bcc_(\d+))\s")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_bcc_events(functions):
    """Remove the BCC kprobe events on functions (names) whose process is
    gone; returns (how many were removed, "event: why" for each that could
    not be)."""
    base = tracefs_dir()
    if base is None:
        return 0, []
    path = os.path.join(base, "kprobe_events")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, []
    removed, failed = 0, []
    for line in lines:
        found = BCC_EVENT.match(line)
        if not found or found.group(2) not in functions or _alive(int(found.group(3))):
            continue
        # os.open, not open(path, "a"): Python seeks to the end of a file it
        # opens to append, and kprobe_events refuses SEEK_END (EINVAL).
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, f"-:{found.group(1)}\n".encode())
            finally:
                os.close(fd)
            removed += 1
        except OSError as e:
            failed.append(f"{found.group(1)}: {e.strerror}")
    return removed, failed
