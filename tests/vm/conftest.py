"""The real-kernel tests' shared tracer: one `nltrace flow --json` a module, checked for a clean end.

They run inside the test VM (make test-vm), never on a kernel without
kprobes. The tracer serves a whole module, started once because a BCC
compile costs tens of seconds under emulation; no two nltrace instances run
at once. Every tool runs through tests/harness (its ready file, the marker
sync: tests/harness/tracer.py).
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from harness.tracer import Tracer, nltrace  # noqa: E402

CLIENT = os.path.join(ROOT, "tests", "clients", "nlclient.py")


@pytest.fixture(scope="module")
def tracer():
    if not os.path.isdir("/sys/bus/event_source/devices/kprobe"):
        # Never a silent pass or skip off a real kernel: these tests fail.
        pytest.fail("tests/vm needs a kernel with kprobes: run them with `make test-vm`")
    # nfnetlink_rcv_batch is in a module, traced when it is loaded as
    # nltrace starts (as on a machine where nft has run)
    subprocess.run(["modprobe", "nfnetlink"], check=True)
    t = Tracer(nltrace("flow", "--json"))
    yield t
    t.stop()
    # A clean end: exit 0, the summary line, nothing left attached.
    assert t.proc.returncode == 0, t.stderr
    summary = [line for line in t.stderr if re.match(r"nltrace: \d+ trees shown, \d+ lost", line)]
    assert summary, t.stderr
    assert ", 0 lost," in summary[-1], summary
    # the kernel headers' warnings BCC's clang gave (6.12) are silenced, not shown to users
    assert not any("warnings generated" in line or "warning:" in line for line in t.stderr), t.stderr
    with open("/sys/kernel/tracing/kprobe_events") as f:
        leftovers = [line for line in f if "netlink" in line]
    assert leftovers == [], leftovers
    # and no fentry/fexit program: their links ended with the process
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], check=True,
                                      capture_output=True, text=True).stdout)
    assert [link for link in links if link.get("type") == "tracing"] == []

