"""nltrace-agent built for x86-64 (`nltrace build --target x86_64`), run in the
test VM against the same workload as the BCC path, and compared with it.

The build takes this kernel's BTF and /proc/kallsyms (Debian's System.map
is a placeholder), the way a user without the -dbg package would. The
agent's trees are also written to $NLTRACE_VM_OUT/agent-x86/reference.json:
tests/arm compares the emulated ARM board's trees with them.
"""

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import ROOT
from harness.shapes import AGENT_TEXT_LOAD, NLLOAD_SENDS, check_agent_text, nlload_sends, sent, summaries
from harness.tracer import Tracer, bpf_programs_once_freed, build_agent_here, nltrace, render
from nltrace.stream_format import read_frames

WORKLOAD = os.path.join(ROOT, "tests", "clients", "workload.sh")
OUT = os.path.join(os.environ.get("NLTRACE_VM_OUT", "/tmp"), "agent-x86")


@pytest.fixture(scope="module")
def agent():
    """The built agent's path (nlload is built beside it)."""
    os.makedirs(OUT, exist_ok=True)
    build = subprocess.run(build_agent_here(OUT), capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    cc = subprocess.run(["gcc", "-O2", "-static", "-o", os.path.join(OUT, "nlload"),
                         os.path.join(ROOT, "bench", "nlload.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    return os.path.join(OUT, "nltrace-agent")


def agent_kprobe_events():
    """The return probes agents made in tracefs (kprobe_events.c) that remain."""
    with open("/sys/kernel/tracing/kprobe_events") as f:
        return [line for line in f if ":nltrace/nlt_" in line]


def run_agent(agent, args, workload):
    """Start the agent, wait until it is attached (its ready file), run
    workload (argv), then Ctrl-C it; nothing of it may remain in tracefs.
    Returns (stdout lines, stderr lines)."""
    tool = Tracer([agent, *args], parse=str)
    subprocess.run(workload, check=True)
    assert tool.stop(signal.SIGINT) == 0, tool.stderr
    assert agent_kprobe_events() == []
    return tool.stdout, tool.stderr


# kill -9 moments while an agent loads, as shares of the time an agent took
# to attach: it makes its return probes in tracefs, one write each, between
# its start and its ready file.
LOADING_KILL_SHARES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def test_a_killed_agents_return_probes_are_removed_by_the_next(agent):
    """kill -9 of an agent once attached, then of agents while they load:
    each leaves its kprobe_events behind, never a program, and each next
    agent removes those of the dead as it starts (and its own as it ends)."""
    attached = Tracer([agent, "-o", "/dev/null"], parse=str)
    attached.proc.kill()
    assert attached.stop() == -signal.SIGKILL
    assert any(f"nlt_{attached.proc.pid}_" in line for line in agent_kprobe_events())
    dead, left_by = [str(attached.proc.pid)], []   # left_by: what each agent killed while loading left
    for share in LOADING_KILL_SHARES:
        loading = subprocess.Popen([agent, "-o", "/dev/null"], stderr=subprocess.DEVNULL)
        time.sleep(share * attached.startup_s)
        loading.kill()
        assert loading.wait() == -signal.SIGKILL
        dead.append(str(loading.pid))
        left = agent_kprobe_events()
        left_by.append(sum(f"nlt_{loading.pid}_" in line for line in left))
        assert all(re.search(r":nltrace/nlt_(\d+)_", line).group(1) in dead for line in left), left
    print(f"agents killed after {LOADING_KILL_SHARES} of the {attached.startup_s:.1f} s one took to attach "
          f"left {left_by} return probes")
    assert bpf_programs_once_freed() == [], "programs outlived their agent"
    run_agent(agent, ["-o", "/dev/null"], ["true"])


@pytest.fixture(scope="module")
def agent_trees(agent):
    """The agent's trees of the workload, checked against what it sent."""
    stream = os.path.join(OUT, "flow.nltrace")
    _, err = run_agent(agent, ["-o", stream], ["sh", WORKLOAD, OUT])
    trees, summary_line = render("flow", stream)
    assert ", 0 lost," in summary_line, summary_line
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(trees, f)

    # Exactly the requests the workload sent, decoded.
    sends = nlload_sends(trees)
    assert len(sends) == NLLOAD_SENDS, [t["message"] for t in sends]
    assert [t["message"]["cmd_name"] for t in sends[:3]] == ["CTRL_CMD_GETFAMILY"] * 3
    assert {t["handler"] for t in sends[:3]} == {"ctrl_getfamily"}
    assert [t["error"]["name"] for t in sends[3:5]] == ["ENODEV", "ENODEV"]
    assert sends[5]["message"]["type_name"] == "RTM_GETLINK" and sends[5]["handler"] == "rtnl_dump_ifinfo"
    return trees


# The BCC path probes with fentry/fexit where it can (this kernel has BPF
# trampolines and BTF), and with kprobes when asked to or where it cannot;
# the agent always with kprobes. Both kinds must give the agent's trees.
@pytest.mark.parametrize("kind", ["fentry", "kprobes"])
def test_bcc_trees_match_the_agent(agent_trees, kind):
    tracer = Tracer(nltrace("flow", "--json", "--all-probes", *(["--kprobes"] if kind == "kprobes" else [])))
    try:
        done, bcc_trees = tracer.run(["sh", WORKLOAD, OUT])
        assert done.returncode == 0, done.stderr
    finally:
        tracer.stop()
    tracing = next(line for line in tracer.stderr if line.startswith("Tracing"))
    by_fentry = int(re.search(r"\((\d+) by fentry/fexit\)", tracing).group(1))
    assert by_fentry > 0 if kind == "fentry" else by_fentry == 0, tracing
    assert len(nlload_sends(bcc_trees)) == NLLOAD_SENDS
    assert summaries(agent_trees, bcc_trees) == summaries(bcc_trees, agent_trees)
    assert len(sent(agent_trees)) == len(sent(bcc_trees))


def test_agent_latency_counts_exactly(agent):
    stream = os.path.join(OUT, "latency.nltrace")
    run_agent(agent, ["--latency", "-c", "nlload", "-o", stream],
              [os.path.join(OUT, "nlload"), "get", "--count", "7"])
    reports, summary = render("latency", stream, "--by", "message")
    # each histograms frame is one interval: the run may span several
    counts = Counter()
    for report in reports:
        counts.update({h["key"]: h["count"] for h in report["histograms"]})
    # the summary's counters (stale, incomplete trees) say where a missing request went
    assert counts == {"RTM_GETLINK": 7}, ([r["histograms"] for r in reports], summary)


def test_agent_text_mode(agent):
    nlload = os.path.join(OUT, "nlload")
    lines, _ = run_agent(agent, ["--text", "-c", "nlload"],
                         ["sh", "-c", " && ".join(f"{nlload} {args} > /dev/null" for args in AGENT_TEXT_LOAD)])
    check_agent_text(lines)


def test_agent_snaplen_and_pcapng(agent, tmp_path):
    """--snaplen 16 keeps the headers only; the stream dates itself
    (realtime_offset_ns), and its pcapng export keeps the full lengths."""
    stream = tmp_path / "snap.nltrace"
    run_agent(agent, ["--snaplen", "16", "-c", "nlload", "-o", str(stream)],
              [os.path.join(OUT, "nlload"), "get", "--count", "3"])
    trees, _ = render("flow", stream)
    sends = nlload_sends(trees)
    assert len(sends) == 3
    for tree in sends:
        assert tree["message"]["type_name"] == "RTM_GETLINK" and tree["message"]["truncated"]
        assert "fields" not in tree["message"] or not tree["message"]["fields"]
    with open(stream, "rb") as f:
        _, header = next(read_frames(f))
    offset = time.time_ns() - time.monotonic_ns()
    assert abs(header["realtime_offset_ns"] - offset) < 5 * 10**9, (header, offset)
    pcap = tmp_path / "snap.pcapng"
    done = subprocess.run(nltrace("export", str(stream), "--to", "pcapng", "-o", str(pcap)),
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    frames = subprocess.run(["tshark", "-r", str(pcap), "-Y", 'frame.comment contains "comm=nlload"', "-T", "fields",
                             "-e", "frame.cap_len", "-e", "frame.len", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [line.split("\t") for line in frames if line]
    nlload_packets = [t for t in trees if t["comm"] == "nlload" and t["message"]]
    assert len(rows) == len(nlload_packets)
    assert all(int(cap) <= 16 + 16 and int(full) >= int(cap) for cap, full, _ in rows), rows
    assert all(abs(float(epoch) - time.time()) < 600 for _, _, epoch in rows), rows


def test_flow_with_the_agent(agent):
    """nltrace flow --agent: the built agent loads and attaches, flow shows
    its trees live: exactly the requests sent, filtered by -c in the agent.
    SIGTERM to flow stops the agent, which leaves nothing attached."""
    tool = Tracer(nltrace("flow", "--json", "--agent", agent, "-c", "nlload"))
    try:
        subprocess.run([os.path.join(OUT, "nlload"), "get", "--count", "40"], check=True)
    finally:
        assert tool.stop() == 0, tool.stderr   # the agent's last trees are read before flow ends
    trees = tool.stdout
    sends = nlload_sends(trees)
    assert len(sends) == 40, [t["message"] for t in sends]
    assert {t["message"]["type_name"] for t in sends} == {"RTM_GETLINK"}
    assert {t["comm"] for t in trees} == {"nlload"}
    assert agent_kprobe_events() == []
    assert any(line.startswith("nltrace: ") and " trees shown, 0 lost" in line for line in tool.stderr), tool.stderr


def test_latency_with_the_agent(agent):
    """nltrace latency --agent -i: the agent's histograms, every interval and
    at the end, summed: exactly the requests sent."""
    tool = Tracer(nltrace("latency", "--json", "--agent", agent, "-c", "nlload", "-i", "1"))
    try:
        subprocess.run([os.path.join(OUT, "nlload"), "get", "--count", "7"], check=True)
    finally:
        assert tool.stop() == 0, tool.stderr
    counts = Counter()
    for report in tool.stdout:
        counts.update({h["key"]: h["count"] for h in report["histograms"]})
    assert counts == {"RTM_GETLINK": 7}, tool.stdout
    assert agent_kprobe_events() == []


def test_flow_killed_takes_its_agent_with_it(agent):
    """kill -9 of nltrace flow --agent: the agent gets SIGTERM from the
    kernel (PR_SET_PDEATHSIG) and detaches; nothing stays attached."""
    tool = Tracer(nltrace("flow", "--json", "--agent", agent))
    agents = subprocess.run(["pgrep", "-P", str(tool.proc.pid), "-x", "nltrace-agent"],
                            capture_output=True, text=True).stdout.split()
    assert len(agents) == 1, agents
    tool.proc.kill()
    tool.stop()
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{agents[0]}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{agents[0]}")
    assert agent_kprobe_events() == []
