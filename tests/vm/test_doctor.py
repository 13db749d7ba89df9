"""nltrace doctor on a real kernel, held against the kernel's own accounts
(tracefs, bpftool, bpftrace) and against what the session's flow attached.
The kernel matrix runs it on each kernel (Makefile: test-matrix)."""

import json
import re
import subprocess

import pytest

from harness.shapes import hookable_functions, traceable
from harness.tracer import nltrace
from nltrace.catalogue import FLOW_DEFAULT


def doctor_report():
    doctor = subprocess.run(nltrace("doctor", "--json"), capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["can_trace"] and all(c["ok"] for c in report["checks"] if c["needed"]), report["checks"]
    return report


def bpftool(*args):
    return subprocess.run(["bpftool", *args], check=True, capture_output=True, text=True).stdout


def trampoline_links():
    return sum(1 for link in json.loads(bpftool("-j", "link", "show")) if link.get("type") == "tracing")


def kfunc_attaches(function):
    """Whether bpftrace, which needs no argument helper, can put a fentry
    program on function: the kernel's own answer to the trampoline's limits."""
    probe = subprocess.run(["bpftrace", "-e", f"kfunc:{function} {{ }} BEGIN {{ exit(); }}"],
                           capture_output=True, text=True, timeout=300)
    return probe.returncode == 0


@pytest.mark.kernels
def test_doctor_says_what_the_kernel_has_and_what_flow_attaches(tracer):
    report = doctor_report()
    rows = {row["function"]: row for row in report["probes"]}
    fentry_check = next(c for c in report["checks"] if c["name"] == "fentry/fexit")

    # Traceable or inlined: the kernel's list of functions ftrace can hook.
    hookable = hookable_functions()
    for name, row in rows.items():
        if row["kind"] != "raw_tracepoint":
            # its own name, or (for a probe that reads no argument) a compiler variant of it
            if row["attach_to"]:
                assert row["attach_to"] in hookable and traceable(name, {row["attach_to"]}), row
            else:
                assert name not in hookable, row

    # The argument helpers, as the kernel's BTF names them (bpftool's reading).
    helpers = set(re.findall(r"'BPF_FUNC_(get_func_arg|get_func_ret)'", bpftool(
        "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw")))
    says_fentry = {name for name, row in rows.items() if row["kind"] == "fentry+fexit"}
    if helpers != {"get_func_arg", "get_func_ret"}:
        assert not says_fentry and "lacks bpf_get_func_arg" in fentry_check["detail"], fentry_check
    else:
        assert says_fentry, fentry_check
        # Functions left to kprobes for their arguments' count: the kernel refuses them a trampoline.
        over = re.search(r"kprobes for ([\w, ]+) \(more than", fentry_check["detail"])
        for name in over.group(1).split(", ") if over else ():
            assert rows[name]["kind"] == "kprobe+kretprobe" and not kfunc_attaches(name), name
        # and one doctor gives a trampoline, the kernel gives one too
        assert kfunc_attaches(sorted(says_fentry)[0])

    # What the session's `flow --json` attached (the one nltrace running):
    # doctor's fentry+fexit rows, and as many BPF trampoline links in the
    # kernel (an fentry and an fexit each).
    expected = {name for name in says_fentry & FLOW_DEFAULT if rows[name]["attach_to"] and not rows[name]["note"]}
    assert set(tracer.ready["fentry"]) == expected, (tracer.ready, fentry_check)
    assert trampoline_links() == 2 * len(expected)
    attached = {name for name, row in rows.items() if row["attach_to"] and not row["note"] and name in FLOW_DEFAULT}
    assert set(tracer.ready["attached"]) == attached - set(tracer.ready["missing"]), tracer.ready
