"""The Perfetto export of the recorded stream's trees, read back with Perfetto's
own protobuf classes (the perfetto pip package, in a venv of its own under
.cache: nltrace neither depends on it nor shares its protobuf)."""

import copy
import io
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from nltrace import run
from nltrace.exports.perfetto import PerfettoWriter
from nltrace.filters import Filters
from nltrace.sources.stream import StreamSource
from nltrace.trees import walk
from nltrace.views import message_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK_VENV = os.path.join(ROOT, ".cache", "perfetto-check")
REQUIREMENTS = ["perfetto==0.59.1", "protobuf"]

# Run in CHECK_VENV: each trace file -> its packets as JSON.
READER = r"""
import json, sys
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

def value(a):
    kind = a.WhichOneof("value")
    if kind:
        return getattr(a, kind)
    if a.dict_entries:
        return {e.name: value(e) for e in a.dict_entries}
    return [value(e) for e in a.array_values] or None

out = []
for path in sys.argv[1:]:
    trace = Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())
    packets = []
    for p in trace.packet:
        row = {"seq": p.trusted_packet_sequence_id, "flags": p.sequence_flags,
               "clock": p.HasField("timestamp_clock_id"), "ts": p.timestamp if p.HasField("timestamp") else None}
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            row["track"] = {"uuid": d.uuid, "parent": d.parent_uuid if d.HasField("parent_uuid") else None}
            if d.HasField("process"):
                row["track"]["process"] = {"pid": d.process.pid, "name": d.process.process_name}
            if d.HasField("thread"):
                row["track"]["thread"] = {"pid": d.thread.pid, "tid": d.thread.tid, "name": d.thread.thread_name}
        if p.HasField("track_event"):
            e = p.track_event
            row["event"] = {"type": TrackEvent.Type.Name(e.type), "track": e.track_uuid, "name": e.name,
                            "args": {a.name: value(a) for a in e.debug_annotations},
                            "flows": list(e.flow_ids), "terminates": list(e.terminating_flow_ids)}
        packets.append(row)
    out.append(packets)
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def perfetto_python():
    """CHECK_VENV's python, the venv made once (a stamp says it is complete)."""
    python = os.path.join(CHECK_VENV, "bin", "python")
    stamp = os.path.join(CHECK_VENV, "installed")
    if not os.path.exists(stamp) or open(stamp).read() != " ".join(REQUIREMENTS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", CHECK_VENV], check=True)
        pip = subprocess.run([python, "-I", "-m", "pip", "install", "-q", *REQUIREMENTS],
                             capture_output=True, text=True)
        if pip.returncode:
            pytest.fail(f"cannot install {' '.join(REQUIREMENTS)} into {CHECK_VENV} (no network?), which this test "
                        f"needs to read the trace with Perfetto's own classes:\n{pip.stderr[-3000:]}")
        with open(stamp, "w") as f:
            f.write(" ".join(REQUIREMENTS))
    return python


def read_trees(path):
    src = StreamSource(path, "flow")
    pairs = []
    run.flow(src, Filters(), lambda t, c: pairs.append((t, c)),
             lambda e: None, None)
    src.close()
    return pairs


def with_lost_returns(pairs):
    """Copies of the trees with returns made unseen: every third root, each
    root's first child (the last, when it is the only one) and the last node."""
    out = []
    for i, (tree, capture) in enumerate(pairs):
        tree = copy.deepcopy(tree)
        root = tree["root"]
        lost = [root] if i % 3 == 0 else []
        lost += root["children"][:1] + [list(walk(root))[-1]]
        for node in lost:
            node["duration_ns"] = node["ret"] = None
            node.pop("errno", None)
        tree["incomplete"] = True
        out.append((tree, capture))
    return out


@pytest.fixture(scope="module")
def exported(recorded_stream, perfetto_python, tmp_path_factory):
    """variant -> (its trees, the packets Perfetto's classes read from its export)."""
    pairs = read_trees(recorded_stream)
    variants = {"recorded": pairs, "lost_returns": with_lost_returns(pairs)}
    paths = []
    for name, trees in variants.items():
        paths.append(str(tmp_path_factory.mktemp("perfetto") / f"{name}.pftrace"))
        with open(paths[-1], "wb") as f:
            writer = PerfettoWriter(f)
            for tree, capture in trees:
                writer.add(tree, capture)
            writer.close()
    reader = subprocess.run([perfetto_python, "-I", "-c", READER, *paths], capture_output=True, text=True)
    assert reader.returncode == 0, reader.stderr
    return {name: (trees, packets) for (name, trees), packets in zip(variants.items(), json.loads(reader.stdout))}


def slices(packets):
    """Each track's slices, nested by a stack walk of its BEGIN/END events in
    the order written: track uuid -> [root slice], each a dict with children."""
    roots, stacks = defaultdict(list), defaultdict(list)
    for p in packets:
        event = p.get("event")
        if event is None:
            continue
        stack = stacks[event["track"]]
        if event["type"] == "TYPE_SLICE_BEGIN":
            s = dict(event, begin=p["ts"], children=[])
            (stack[-1]["children"] if stack else roots[event["track"]]).append(s)
            stack.append(s)
        else:
            assert event["type"] == "TYPE_SLICE_END" and stack, event
            s = stack.pop()
            s["end"], s["terminates"] = p["ts"], event["terminates"]
    assert not any(stacks.values()), "slices left open"
    return roots


def shape(node, name="func"):
    return (node[name], [shape(c, name) for c in node["children"]])


def plain(value):
    """value as the reader sees it: no nulls in dicts, empty containers null."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None} or None
    if isinstance(value, (list, tuple)):
        return [("null" if v is None else plain(v)) for v in value] or None
    return value


def node_args(node):
    args = {k: plain(v) for k, v in node.items()
            if k not in ("func", "children", "offset_ns", "duration_ns") and v is not None}
    if node["duration_ns"] is None:
        args["return_not_seen"] = True
    return args


@pytest.mark.parametrize("variant", ["recorded", "lost_returns"])
def test_perfetto_export(exported, variant):
    trees, packets = exported[variant]
    trees = [tree for tree, _ in trees]
    # One sequence; its first packet clears incremental state; no clock ids.
    assert {p["seq"] for p in packets} == {1}
    assert packets[0]["flags"] == 1 and not any(p["flags"] for p in packets[1:])
    assert not any(p["clock"] for p in packets)

    # Each track described before its first event; thread tracks under their process's track.
    described, tracks = set(), {}
    for p in packets:
        if "track" in p:
            described.add(p["track"]["uuid"])
            tracks[p["track"]["uuid"]] = p["track"]
        else:
            assert p["event"]["track"] in described
    by_thread = {(t["thread"]["pid"], t["thread"]["tid"]): t for t in tracks.values() if "thread" in t}
    for t in by_thread.values():
        assert tracks[t["parent"]]["process"]["pid"] == t["thread"]["pid"]
    for tree in trees:
        thread = by_thread[(tree["pid"], tree["tid"])]
        assert thread["thread"]["name"] == tree["comm"]
        if tree["pid"] == tree["tid"]:
            assert tracks[thread["parent"]]["process"]["name"] == tree["comm"]

    # One slice per node, on its tree's thread's track, nested as the tree.
    events = [p["event"] for p in packets if "event" in p]
    nodes = sum(len(list(walk(tree["root"]))) for tree in trees)
    assert sum(e["type"] == "TYPE_SLICE_BEGIN" for e in events) == nodes
    assert sum(e["type"] == "TYPE_SLICE_END" for e in events) == nodes
    roots = slices(packets)
    expected = defaultdict(list)
    for tree in trees:
        expected[by_thread[(tree["pid"], tree["tid"])]["uuid"]].append(tree)
    assert sorted(roots) == sorted(expected)
    tree_of = {}          # id of a slice -> its tree's id
    for track, track_trees in expected.items():
        assert [shape(s, "name") for s in roots[track]] == [shape(t["root"]) for t in track_trees]
        for s, tree in zip(roots[track], track_trees):
            fields = {k: v for k, v in tree.items() if k not in ("root", "ts_ns", "pid", "tid", "comm")}
            assert s["args"].pop("tree") == plain(dict(fields, summary=message_text(tree)))
            assert s["begin"] >= tree["ts_ns"]
            for node, got in zip(walk(tree["root"]), walk(s)):
                tree_of[id(got)] = tree["id"]
                # exact durations, the node's own values as annotations
                if node["duration_ns"] is not None:
                    assert got["end"] - got["begin"] == node["duration_ns"]
                assert got["begin"] == tree["ts_ns"] + node["offset_ns"]
                assert got["args"] == node_args(node)
                # children inside their parent, one after another
                at = got["begin"]
                for child in got["children"]:
                    assert at <= child["begin"] <= child["end"] <= got["end"]
                    at = child["end"]

    # Flows: each link starts at its delivery and ends with its read, in its two trees.
    links = [(t["from"]["tree"], t["id"]) for t in trees if "from" in t]
    links += [(t["id"], d["read_by"]["tree"]) for t in trees for d in t.get("deliveries", ()) if "read_by" in d]
    starts, ends = defaultdict(list), defaultdict(list)
    for track in roots.values():
        for root in track:
            for s in walk(root):
                for flow in s["flows"]:
                    starts[flow].append(s)
                for flow in s["terminates"]:
                    ends[flow].append(s)
    joined = set(starts) & set(ends)
    assert len(joined) == len(links)
    for flow in joined:
        assert len(starts[flow]) == len(ends[flow]) == 1
        start, end = starts[flow][0], ends[flow][0]
        assert start["name"] == "__netlink_sendskb" and end["name"] == "netlink_recvmsg"
        if variant == "recorded":   # Perfetto joins a flow's ends in time order (a lost return's end is a guess)
            assert start["begin"] <= end["end"]
    assert sorted((tree_of[id(starts[f][0])], tree_of[id(ends[f][0])]) for f in joined) == sorted(links)


def test_writes_as_it_goes(recorded_stream):
    """Each tree is written by its add(), not kept for close()."""
    out = io.BytesIO()
    writer = PerfettoWriter(out)
    sizes = []
    for tree, capture in read_trees(recorded_stream)[:3]:
        writer.add(tree, capture)
        sizes.append(out.tell())
    assert 0 < sizes[0] < sizes[1] < sizes[2]
