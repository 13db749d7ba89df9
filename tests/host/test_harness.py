"""Host tests of tests/harness: the tracer process against a stand-in tool, the projection on fixtures."""

import json
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import tracer as tracer_module  # noqa: E402
from harness.shapes import NLLOAD_SENDS, N, functions, matches, nlload_sends, sent, shape, summaries  # noqa: E402
from harness.tracer import Tracer, render  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
AGENT_FLOW = os.path.join(FIXTURES, "agent-flow-armv6-6.1.0-50-rpi.nltrace")

# A stand-in for a tracing tool: attaches (writes --ready-file), prints two
# trees, and on SIGTERM prints its summary and ends; "stubborn" ignores SIGTERM,
# "deaf" misses the first one (as bpftrace 0.17 can), "early" ends before it is
# ready. It "traces" the markers that write their pid to the file MARKERS
# names, all but the first ("lossy": its tree is lost).
FAKE_TOOL = r"""
import json, os, signal, sys, time
mode, markers, shown = sys.argv[1], sys.argv[2], set()
if mode == "early":
    sys.exit(3)
heard = []
def end(*_):
    heard.append(1)
    if mode == "deaf" and len(heard) == 1:
        return
    print("fake: 2 trees shown", file=sys.stderr, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else end)
print("attaching", file=sys.stderr, flush=True)
for n in (1, 2):
    print(json.dumps({"pid": n, "comm": "x", "root": {"func": "f", "children": []}}), flush=True)
if "--ready-file" in sys.argv:
    with open(sys.argv[sys.argv.index("--ready-file") + 1], "w") as f:
        f.write('{"probes": 1}\n')
else:
    print("Tracing", flush=True)
while True:
    time.sleep(0.1)
    pids = open(markers).read().split() if os.path.exists(markers) else []
    for pid in pids[1 if mode == "lossy" else 0:]:
        if pid not in shown:
            shown.add(pid)
            print(json.dumps({"pid": int(pid), "comm": "ip", "root": {"func": "f", "children": []}}), flush=True)
"""


def fake(tmp_path, mode, **kwargs):
    script = tmp_path / "fake.py"
    script.write_text(FAKE_TOOL)
    return Tracer([sys.executable, str(script), mode, str(tmp_path / "markers")], **kwargs)


def test_tracer_waits_for_the_ready_file_and_keeps_the_output(tmp_path):
    tool = fake(tmp_path, "normal")
    assert tool.ready == {"probes": 1} and tool.proc.poll() is None
    tool.wait_for(lambda: len(tool.stdout) == 2, "the trees", 10)
    assert tool.stop() == 0
    assert [t["pid"] for t in tool.stdout] == [1, 2]
    assert tool.stderr == ["attaching", "fake: 2 trees shown"]
    assert not os.path.exists(tool.ready_file)


def test_tracer_counts_without_keeping(tmp_path):
    seen = []
    tool = fake(tmp_path, "normal", parse=seen.append)
    tool.wait_for(lambda: len(seen) == 2, "the trees", 10)
    assert tool.stop() == 0
    assert tool.stdout == [] and len(seen) == 2


def test_tracer_ready_line_for_tools_without_a_ready_file(tmp_path):
    tool = fake(tmp_path, "normal", parse=str, ready_line="Tracing")
    assert tool.ready_file is None and tool.stdout[-1] == "Tracing"
    assert tool.stop(signal.SIGTERM) == 0


def test_tracer_that_ends_before_ready_fails(tmp_path):
    with pytest.raises(AssertionError, match="never got ready"):
        fake(tmp_path, "early", ready_wait=10)


def test_tracer_that_does_not_end_is_aborted(tmp_path):
    tool = fake(tmp_path, "stubborn")
    with pytest.raises(AssertionError, match="did not end after SIGTERM; kernel side: thread"):
        tool.stop(timeout=1)
    assert tool.proc.returncode == -signal.SIGABRT


def test_a_missed_signal_is_sent_again(tmp_path):
    tool = fake(tmp_path, "deaf")
    assert tool.stop(timeout=30, resend_s=0.5) == 0
    assert tool.stderr[-1] == "fake: 2 trees shown"


@pytest.mark.parametrize("mode", ["normal", "lossy"])
def test_sync_waits_for_a_markers_tree(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(tracer_module, "MARKER", ["sh", "-c", f"echo $$ >> {tmp_path / 'markers'}"])
    tool = fake(tmp_path, mode)
    mark = tool.mark()
    if mode == "normal":
        assert [t["pid"] for t in tool.since(mark) if t["comm"] == "ip"] == [int((tmp_path / "markers").read_text())]
    else:   # the first marker's tree is lost: the second one, sent 1 s later, syncs
        tool.sync(timeout=10, resend_s=1)
        assert len((tmp_path / "markers").read_text().split()) == 2
        assert len([t for t in tool.stdout if t["comm"] == "ip"]) == 1
    monkeypatch.setattr(tracer_module, "MARKER", ["true"])   # a marker the tool never sees
    with pytest.raises(AssertionError, match="the marker's tree never came"):
        tool.sync(timeout=1)
    assert tool.stop() == 0


def without(node, func):
    """The tree with every node named func left out, its children lifted (as
    a kernel that inlines func would record it)."""
    kids = []
    for child in node["children"]:
        sub = without(child, func)
        kids.extend(sub if isinstance(sub, list) else [sub])
    return dict(node, children=kids) if node["func"] != func else kids


def optional(expected):
    """Every node below the top of an expected (func, children) made optional."""
    func, kids = expected
    return (func, [(f + "?", optional((f, k))[1]) for f, k in kids])


def test_shape_matches_with_optional_nodes(recorded_stream):
    trees, _ = render("flow", recorded_stream)
    deep = [t for t in trees if len(functions([t])) >= 4]
    assert deep
    for tree in deep:
        full = shape(tree["root"])
        assert full == shape(tree["root"], functions([tree]))
        assert matches([full], [full]) and matches([optional(full)], [full])
        for func in functions([tree]) - {tree["root"]["func"]}:
            inlined = shape(dict(tree["root"], children=without(tree["root"], func)["children"]))
            assert matches([optional(full)], [inlined])
            assert not matches([full], [inlined])
        assert not matches([N("netlink_nosuchfunc")], [full])


def test_summaries_compare_over_the_functions_both_traced():
    trees, summary_line = render("flow", AGENT_FLOW)
    assert ", 0 lost," in summary_line
    assert len(nlload_sends(trees)) == NLLOAD_SENDS
    inlined = [dict(t, root=without(t["root"], "netlink_rcv_skb")) for t in trees]
    assert "netlink_rcv_skb" in functions(sent(trees)) - functions(sent(inlined))
    assert summaries(trees, inlined) == summaries(inlined, trees)
    assert summaries(trees, trees) != summaries(trees, inlined)
    assert "netlink_rcv_skb" not in json.dumps(summaries(trees, inlined))
