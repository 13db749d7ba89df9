"""Faults on a real kernel: a kill -9 of latency, record or flow leaves BCC's
tracefs kretprobes, which the next run removes; a reader that goes away, a full disk and a
Ctrl-C during the compile each end the tool with a line and leave nothing."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import CLIENT, ROOT
from harness.tracer import Tracer, bpf_programs, bpf_programs_once_freed, nltrace

KPROBE_EVENTS = "/sys/kernel/tracing/kprobe_events"
NLLOAD = os.path.join(ROOT, ".cache", "bench", "nlload")


def bcc_events(pid):
    with open(KPROBE_EVENTS) as f:
        return [line for line in f if line.split()[0].endswith(f"_bcc_{pid}")]


def mapped(pid, library):
    """Whether nltrace's process pid has library mapped (not the parent's
    copy it held before its exec)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        if b"nltrace" not in f.read():
            return False
    with open(f"/proc/{pid}/maps") as f:
        return library in f.read()


def killed_attached(argv, left_before=()):
    """Start argv, kill -9 it once it is attached (its ready file); the
    return probes it left in tracefs. Its programs go with its process, and
    its start removed those an earlier kill left (left_before)."""
    killed = Tracer(argv, parse=str)
    assert bpf_programs(), f"no nltrace program loaded while {argv[-1]} runs"
    killed.proc.kill()
    assert killed.stop() == -signal.SIGKILL
    if left_before:
        assert any(f"removed {len(left_before)} kprobe events" in line for line in killed.stderr), killed.stderr
    left = bcc_events(killed.proc.pid)
    assert left, f"kill -9 of {argv} left no kretprobe in tracefs: nothing to test"
    assert bpf_programs_once_freed() == [], "programs outlived their process"
    return left


def test_kill_9_leftovers_are_removed_by_the_next_run(tmp_path):
    """kill -9 of latency during its compile, then of record and of flow once
    attached: each next run removes the return probes the last one left."""
    latency = subprocess.Popen(nltrace("latency"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not mapped(latency.pid, "libbcc"):
        assert latency.poll() is None, latency.stderr.read()
        time.sleep(0.05)
    time.sleep(1)
    latency.kill()
    _, err = latency.communicate(timeout=60)
    assert latency.returncode == -signal.SIGKILL and "Tracing" not in err, err
    assert bcc_events(latency.pid) == [] and bpf_programs() == []   # nothing is attached during the compile

    capture = tmp_path / "killed.nltrace"
    left = killed_attached(nltrace("record", "-o", str(capture)))
    # what the killed record wrote reads back to its last whole frame
    read = subprocess.run(nltrace("flow", "--input", str(capture), "--json"), capture_output=True, text=True)
    assert read.returncode == 0 or (read.returncode == 1 and "whole frames" in read.stderr), read.stderr
    left = killed_attached(nltrace("flow", "--json"), left)

    # The next run removes them; its reader goes away after one tree
    # (flow | head -1): a clean end, nothing of either run left.
    flow = subprocess.Popen(nltrace("flow", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = subprocess.Popen(["head", "-1"], stdin=flow.stdout, stdout=subprocess.PIPE, text=True)
    flow.stdout.close()   # head holds the pipe's only reading end
    said = []
    while not said or not said[-1].startswith("Tracing"):
        said.append(flow.stderr.readline())
        assert said[-1], f"flow ended before it was ready: {said}"
    while head.poll() is None:
        subprocess.run(["ip", "link", "show", "lo"], capture_output=True)
        time.sleep(0.5)
    assert flow.wait(timeout=120) == 0
    err = "".join(said) + flow.stderr.read()
    assert head.stdout.read().startswith("{")
    assert f"removed {len(left)} kprobe events" in err and "Traceback" not in err, err
    with open(KPROBE_EVENTS) as f:
        assert "_bcc_" not in f.read()
    assert bpf_programs() == []


def test_a_full_disk_ends_record_with_a_readable_stream(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "nltrace-tiny", str(tiny)], check=True)
    try:
        stream = tiny / "capture.nltrace"
        record = Tracer(nltrace("record", "-o", str(stream)), parse=str)
        deadline = time.monotonic() + 300
        while record.proc.poll() is None and time.monotonic() < deadline:
            subprocess.run(["ip", "addr", "show"], capture_output=True)
        assert record.stop() == 1, record.stderr
        assert any(re.match(r"nltrace: writing .* failed: No space left on device", line) for line in record.stderr), \
            record.stderr
        assert not any("Traceback" in line for line in record.stderr)
        shown = subprocess.run(nltrace("flow", "--input", str(stream), "--json"), capture_output=True, text=True)
        assert shown.returncode == 1 and "Traceback" not in shown.stderr
        whole = int(re.search(r"after (\d+) whole frames", shown.stderr).group(1))
        trees = shown.stdout.splitlines()
        assert trees and whole >= len(trees) + 1   # the header, then the records shown
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
    assert bpf_programs() == []


# What is mapped at each moment: cffi's backend once nltrace's modules load
# (nltrace.records), libbcc once BccSource starts, its compile right after.
MOMENTS = {"while its modules load": ("_cffi_backend", 0), "during the compile": ("libbcc", 1)}


@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_before_tracing_leaves_nothing(moment):
    flow = subprocess.Popen(nltrace("flow"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    library, then_s = MOMENTS[moment]
    while not mapped(flow.pid, library):
        assert flow.poll() is None, flow.stderr.read()
        time.sleep(0.05)
    time.sleep(then_s)
    flow.send_signal(signal.SIGINT)
    _, err = flow.communicate(timeout=300)
    assert flow.returncode == 130 and "Traceback" not in err, err
    assert "Tracing" not in err, f"SIGINT came too late to test {moment}: {err}"
    assert bpf_programs() == []
    with open(KPROBE_EVENTS) as f:
        assert "_bcc_" not in f.read()


NLLOAD_RUNS, NLLOAD_COUNT, GETSTATS = 20, 5, 9


def sends(trees):
    return [t for t in trees if t["root"]["func"] == "netlink_sendmsg" and t["message"]]


@pytest.mark.long     # four BCC compiles at once
def test_four_instances_each_see_exactly_their_messages():
    """Four flows at once, filtered by pid, by comm, by type (in user space)
    and not at all; 20 fresh nlload processes (each one's first message
    too), a waiting client and a getstats client."""
    waiting = subprocess.Popen([sys.executable, CLIENT, "--wait", "mix", "--getlink", "7", "--getfamily", "4"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    argvs = {"pid": nltrace("flow", "--json", "-p", str(waiting.pid)),
             "comm": nltrace("flow", "--json", "-c", "nlload"),
             "type": nltrace("flow", "--json", "--type", "RTM_GETSTATS"),
             "all": nltrace("flow", "--json")}
    with ThreadPoolExecutor(len(argvs)) as pool:   # each compiles on its own: started together
        tracers = dict(zip(argvs, pool.map(Tracer, argvs.values())))
    try:
        waiting.communicate("go\n", timeout=300)
        runs = [subprocess.run([NLLOAD, "get", "--count", str(NLLOAD_COUNT)], capture_output=True) for _ in
                range(NLLOAD_RUNS)]
        assert all(r.returncode == 0 for r in runs)
        stats = subprocess.Popen([sys.executable, CLIENT, "--count", str(GETSTATS), "getstats", "--index", "1"],
                                 stdout=subprocess.DEVNULL)
        assert stats.wait() == 0
        tracers["all"].sync()    # the others never see the marker: each drains its ring buffer as it stops
    finally:
        for tracer in tracers.values():
            assert tracer.stop() == 0, tracer.stderr
    seen = {name: tracer.stdout for name, tracer in tracers.items()}
    mine = sends(seen["pid"])
    assert {t["pid"] for t in seen["pid"]} == {waiting.pid} and len(mine) == 11
    nlload = sends(seen["comm"])
    assert {t["comm"] for t in seen["comm"]} == {"nlload"}
    assert len(nlload) == NLLOAD_RUNS * NLLOAD_COUNT
    assert sorted(Counter(t["pid"] for t in nlload).values()) == [NLLOAD_COUNT] * NLLOAD_RUNS
    assert {t["message"]["type_name"] for t in seen["type"]} == {"RTM_GETSTATS"}
    assert [t["pid"] for t in sends(seen["type"])] == [stats.pid] * GETSTATS
    everything = sends(seen["all"])
    assert len([t for t in everything if t["pid"] == waiting.pid]) == 11
    assert len([t for t in everything if t["comm"] == "nlload"]) == NLLOAD_RUNS * NLLOAD_COUNT

