"""The exports on a real kernel: a live `flow --pcapng --perfetto` of ip, ss, genl, ethtool
and a refused request read back by tshark and by the protobuf classes."""

import re
import subprocess

from harness.tracer import Tracer, nltrace
from nltrace.exports.perfetto import Trace
from nltrace.trees import walk

WORKLOAD = [["ip", "link", "show", "lo"], ["ss", "-x", "-a"], ["genl", "ctrl", "list"], ["ethtool", "lo"],
            ["ip", "route", "add", "10.99.0.0/16", "via", "10.98.0.1"]]   # refused, with extack
SLICE_BEGIN = 1


def test_live_pcapng_and_perfetto(tmp_path):
    pcap, perfetto = tmp_path / "live.pcapng", tmp_path / "live.pftrace"
    tracer = Tracer(nltrace("flow", "--json", "--pcapng", str(pcap), "--perfetto", str(perfetto)))
    try:
        pids = {}
        for argv in WORKLOAD:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert proc.wait() == (2 if argv[1] == "route" else 0), argv
            pids[proc.pid] = argv[0]
        tracer.sync()
    finally:
        assert tracer.stop() == 0, tracer.stderr
    trees = tracer.stdout
    mine = [t for t in trees if t["pid"] in pids]
    assert {pids[t["pid"]] for t in mine} == {"ip", "ss", "genl", "ethtool"}

    frames = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e", "frame.comment",
                             "-e", "netlink.family", "-e", "frame.protocols", "-e", "genl.family_id"],
                            capture_output=True, text=True, check=True).stdout
    packets = {}
    for line in frames.splitlines():
        comment, family, protocols, genl = line.split("|")
        found = re.search(r"\bpid=(\d+) tid=\d+ comm=(\S+).*\btree=(\d+)", comment)
        if found:
            packets[int(found.group(3))] = (int(found.group(1)), found.group(2), int(family, 16), protocols, genl,
                                            comment)
    by_id = {t["id"]: t for t in trees}
    with_message = [t for t in mine if t["message"] and t["protocol"] != "NETLINK_KOBJECT_UEVENT"]
    assert sorted(i for i in packets if by_id[i]["pid"] in pids) == sorted(t["id"] for t in with_message)
    protocols = {"ip": "netlink-route", "ss": "netlink", "genl": "genl", "ethtool": "genl"}
    for tree in with_message:
        pid, comm, _, stack, genl, comment = packets[tree["id"]]
        assert (pid, comm) == (tree["pid"], tree["comm"])
        # NLMSG_ERROR, NLMSG_DONE: the netlink dissector's own, without the protocol's layer
        layer = "netlink" if tree["message"]["type"] < 16 else protocols[comm]
        assert layer in stack.split(":") and "_ws.malformed" not in stack, (tree["message"], stack)
        if tree["message"].get("family") in ("nlctrl", "ethtool"):
            assert genl, comment
    refused = [t for t in with_message if t["error"] and t["error"]["extack"] and t["comm"] == "ip"]
    assert refused and all(f"extack: {t['error']['extack']}" in packets[t["id"]][5] for t in refused)

    # one slice per node: each tree's packets are written together, its root's slice first
    trace = Trace.FromString(perfetto.read_bytes())
    slices, tree_id = {}, None
    for packet in trace.packet:
        if packet.HasField("track_event") and packet.track_event.type == SLICE_BEGIN:
            for note in packet.track_event.debug_annotations:
                if note.name == "tree":
                    tree_id = next(e.int_value for e in note.dict_entries if e.name == "id")
            slices[tree_id] = slices.get(tree_id, 0) + 1
    nodes = {t["id"]: len(list(walk(t["root"]))) for t in trees if t["root"]}
    assert slices == nodes, {i: (slices.get(i), nodes.get(i)) for i in set(slices) | set(nodes)
                             if slices.get(i) != nodes.get(i)}
