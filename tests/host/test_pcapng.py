"""The pcapng export read back by tshark (Debian's, installed by make install), on the recorded stream."""

import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources

import pytest

from nltrace import run
from nltrace.decode import PROTOCOL_VALUES
from nltrace.exports import Export
from nltrace.filters import Filters
from nltrace.sources.stream import StreamSource

UEVENT = PROTOCOL_VALUES["NETLINK_KOBJECT_UEVENT"]
GENERIC = PROTOCOL_VALUES["NETLINK_GENERIC"]
OFFSET_NS = 1_700_000_000 * 10**9


PLUGIN = resources.files("nltrace") / "exports" / "nltrace.lua"


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tmp_path_factory.mktemp("pcapng") / "trace.pcapng"


@pytest.fixture(scope="module")
def exported(recorded_stream, path):
    """(trees by id with their captures, tshark's PDML packets) of the recorded stream's export."""
    assert shutil.which("tshark"), "tshark is missing: make install installs it"
    source = StreamSource(recorded_stream, "flow")
    export = Export("pcapng", str(path), OFFSET_NS)
    trees = {}
    run.flow(source, Filters(), lambda tree, capture: trees.setdefault(tree["id"], (tree, capture)),
             pytest.fail, None, exports=[export])
    export.close()
    source.close()
    pdml = subprocess.run(["tshark", "-r", str(path), "-T", "pdml"], capture_output=True, check=True).stdout
    return trees, ET.fromstring(pdml).findall("packet")


def fields(packet):
    """{field name: [(show, showname)]} of one PDML packet."""
    out = {}
    for f in packet.iter("field"):
        out.setdefault(f.get("name"), []).append((f.get("show"), f.get("showname") or ""))
    return out


def words(comment):
    return dict(w.split("=", 1) for w in comment.splitlines()[0].split() if "=" in w)


def test_every_message_decodes_as_its_protocol_and_type(exported):
    trees, packets = exported
    traced = [(p, fields(p)) for p in packets]
    traced = [(p, f) for p, f in traced if "tree" in words(f["frame.comment"][0][0])]
    wanted = {i for i, (tree, capture) in trees.items() if capture.data and capture.protocol != UEVENT}
    assert sorted(int(words(f["frame.comment"][0][0])["tree"]) for _, f in traced) == sorted(wanted)
    for packet, f in traced:
        tree, capture = trees[int(words(f["frame.comment"][0][0])["tree"])]
        assert "_ws.malformed" not in f, f"tree {tree['id']}: tshark found it malformed"
        assert int(f["netlink.family"][0][0], 16) == capture.protocol
        assert int(f["frame.len"][0][0]) == 16 + capture.length
        assert int(f["frame.cap_len"][0][0]) == 16 + len(capture.data)
        nlmsg_type = struct.unpack_from("=H", capture.data, 4)[0]
        types = f.get("netlink.hdr_type") or f.get("netlink-route.nltype") or f.get("genl.family_id")
        assert types and int(types[0][0], 0) == nlmsg_type, f"tree {tree['id']}: {types}"
        assert int(f["frame.time_epoch"][0][0].replace(".", "")) == tree["ts_ns"] + OFFSET_NS
        direction = int(f["frame.packet_flags_direction"][0][0], 16)
        assert direction == (2 if tree["root"]["func"] == "netlink_sendmsg" else 1)


def test_genl_families_decode_by_name(exported):
    trees, packets = exported
    genl = [(trees[int(words(f["frame.comment"][0][0])["tree"])][0], f)
            for f in map(fields, packets) if "genl.family_id" in f and "tree" in words(f["frame.comment"][0][0])]
    named = {tree["message"]["family"] for tree, _ in genl if tree["message"].get("family")}
    assert named >= {"ethtool", "nlctrl"}, named
    for tree, f in genl:
        family = tree["message"].get("family")
        if family:
            assert f["genl.family_id"][0][1].endswith(f"({family})"), f["genl.family_id"]


def test_comments_carry_the_trees_facts(exported):
    trees, packets = exported
    seen = 0
    for f in map(fields, packets):
        comment = f["frame.comment"][0][0]
        facts = words(comment)
        if "tree" not in facts:
            assert comment.startswith("nltrace: the family table")
            continue
        tree, _ = trees[int(facts["tree"])]
        assert (int(facts["pid"]), int(facts["tid"]), facts["comm"]) == (tree["pid"], tree["tid"], tree["comm"])
        assert facts.get("handler") == tree["handler"]
        assert facts.get("errno") == (tree["error"] and tree["error"]["name"])
        assert int(facts["duration_ns"]) == tree["root"]["duration_ns"]
        seen += 1
    assert seen and any(words(f["frame.comment"][0][0]).get("errno") for f in map(fields, packets))



def test_the_wireshark_plugin_makes_columns_of_the_comments(exported, path):
    trees, _ = exported
    out = subprocess.run(["tshark", "-X", f"lua_script:{PLUGIN}", "-r", str(path), "-T", "fields",
                          "-e", "nltrace.tree", "-e", "nltrace.pid", "-e", "nltrace.comm", "-e", "nltrace.handler"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.split("\t")[0]]
    assert len(rows) == sum(1 for _, c in trees.values() if c.data and c.protocol != UEVENT)
    for tree_id, pid, comm, handler in rows:
        tree, _ = trees[int(tree_id)]
        assert (int(pid), comm, handler or None) == (tree["pid"], tree["comm"], tree["handler"])


def test_times_and_lengths_past_the_blocks_fields_are_kept_in_range():
    """Found by tests/host/test_fuzz.py: a record's msg_total_len near 2**32
    (the pseudo-header's 16 bytes on top) and a time outside 0..2**64 - 1 ns
    (ts_ns near 2**64, or a negative realtime_offset_ns in the stream's
    header) had python-pcapng raise struct.error."""
    import io

    from pcapng import FileScanner, blocks

    from nltrace.exports.pcapng import PcapngWriter
    from nltrace.records import Capture

    def tree(ts_ns):
        return {"ts_ns": ts_ns, "pid": 1, "tid": 1, "comm": "x", "handler": None, "error": None, "id": 1,
                "message": None, "root": {"func": "netlink_sendmsg", "duration_ns": 1}}

    capture = Capture(struct.pack("=IHHII", 16, 18, 1, 1, 0), 0xffffffff, 0)
    out = io.BytesIO()
    PcapngWriter(out, 10**18).add(tree(2**64 - 5), capture)
    PcapngWriter(out, -2**40).add(tree(5), capture)
    out.seek(0)
    packets = [b for b in FileScanner(out) if isinstance(b, blocks.EnhancedPacket)]
    assert [p.packet_len for p in packets] == [0xffffffff] * 2
    assert [p.timestamp_high << 32 | p.timestamp_low for p in packets] == [2**64 - 1, 0]
