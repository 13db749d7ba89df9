"""Tree assembly on records from a real kernel (tests/fixtures, see conftest)."""

from nltrace.sources.stream import StreamSource
from nltrace import records
from nltrace.trees import assemble, nest


def load(path):
    source = StreamSource(path, "flow")
    trees = [assemble(records.parse_record(raw), source.symbolize) for raw in source.records()]
    source.close()
    return trees


def funcs(node):
    return [node["func"]] + [f for child in node["children"] for f in funcs(child)]


def by_seq(trees, seq, root="netlink_sendmsg"):
    return [t for t in trees if t["root"]["func"] == root and t["message"] and t["message"]["seq"] == seq]


def test_nest_rebuilds_call_order_and_depth():
    nodes = [(d, {"func": f, "children": []}) for d, f in
             [(0, "a"), (1, "b"), (2, "c"), (1, "d"), (2, "e"), (3, "f"), (1, "g")]]
    root = nest(nodes)
    assert [c["func"] for c in root["children"]] == ["b", "d", "g"]
    assert root["children"][1]["children"][0]["children"][0]["func"] == "f"
    # a depth that jumps (an entry lost past NLT_MAX_DEPTH) hangs under the deepest open node
    root = nest([(0, {"func": "a", "children": []}), (3, {"func": "x", "children": []})])
    assert root["children"][0]["func"] == "x"
    assert nest([]) is None


def test_recorded_workloads_assemble(recorded_stream):
    trees = load(recorded_stream)
    assert trees
    for t in trees:
        assert t["root"]["func"] in ("netlink_sendmsg", "netlink_recvmsg", "netlink_unicast", "netlink_broadcast")
        assert not t["truncated"] and not t["incomplete"]
        for node in [t["root"]]:
            assert node["duration_ns"] is not None and node["duration_ns"] >= 0

    (genl,) = by_seq(trees, 100)
    assert (genl["message"]["family"], genl["message"]["cmd_name"]) == ("nlctrl", "CTRL_CMD_GETFAMILY")
    assert genl["handler"] == "ctrl_getfamily"
    assert "genl_family_rcv_msg_doit" in funcs(genl["root"])

    (bad,) = by_seq(trees, 200)
    assert bad["error"] == {"errno": 19, "name": "ENODEV", "extack": None}
    assert bad["handler"] == "rtnl_getlink"
    assert "netlink_ack" in funcs(bad["root"])

    (bridge,) = by_seq(trees, 300)
    assert bridge["error"] == {"errno": 19, "name": "ENODEV", "extack": "unknown ifindex"}
    assert bridge["handler"] == "rtnl_bridge_setlink"

    (send,) = by_seq(trees, 400)
    (recv,) = by_seq(trees, 400, root="netlink_recvmsg")
    assert send["protocol"] == recv["protocol"] == "NETLINK_USERSOCK"
    assert recv["message"]["portid"] == send["message"]["portid"]
    assert send["pid"] != recv["pid"]
    assert funcs(send["root"])[-1] == "__netlink_sendskb"
