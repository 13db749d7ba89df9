"""Malformed messages on a real kernel, held against strace and the acks
the client read. Its own module, so that it runs after the agent tests
(test_flow.py runs first): the agent's latency test missed requests in the
two runs where this test had run before it, a correlation not yet
understood (see the tracker)."""

import errno
import re
import subprocess

import pytest

from nltrace.config import SNAPLEN_MAX
from nltrace.trees import walk
from test_flow import client, sendmsg_trees, sent_by


MALFORMED_PROTOCOLS = {"NETLINK_ROUTE": 0, "NETLINK_SOCK_DIAG": 4, "NETLINK_XFRM": 6, "NETLINK_AUDIT": 9,
                       "NETLINK_NETFILTER": 12, "NETLINK_GENERIC": 16}
SENDTO = re.compile(r"^(\d+) +sendto\(\d+, .*\) += (-?\d+)(?: (E[A-Z0-9]+))?")   # strace pads before " = "


@pytest.mark.parametrize("protocol", MALFORMED_PROTOCOLS)
def test_malformed_messages_as_the_kernel_took_them(tracer, tmp_path, protocol):
    """Each protocol nltrace decodes gets sends shorter than a header, empty,
    with nlmsg_len 0 or past the send, of an unknown type, of 64 KiB, of 100
    messages, of random bytes and of a random body (the client's
    malformed_cases), each followed by an acked NLMSG_NOOP. One tree per
    sendto strace saw; a send the kernel skipped is marked malformed with no
    ack under it, and every message it dispatched has its ack's errno."""
    subprocess.run(["modprobe", "-a", "nf_tables", "unix_diag", "xfrm_user"], check=True)
    log = tmp_path / "strace.txt"
    proc, trees = tracer.run(["strace", "-f", "-qq", "-e", "trace=sendto", "-o", str(log),
                              *client("--seq", "100", "malformed", "--protocol", str(MALFORMED_PROTOCOLS[protocol]))])
    assert proc.returncode == 0, proc.stderr
    cases = sent_by(proc)
    assert len(cases) == 9
    calls = [SENDTO.match(line) for line in log.read_text().splitlines() if "sendto(" in line]
    assert len(calls) == 2 * len(cases) and all(calls)
    mine = sendmsg_trees(trees, cases[0]["pid"])
    assert len(mine) == len(calls)
    # the syscall's own result is the root's; a tree's "error" is the request's (its ack)
    assert [t["root"].get("errno") for t in mine] == [call.group(3) for call in calls]
    for case, tree, probe in zip(cases, mine[::2], mine[1::2]):
        assert tree["protocol"] == protocol
        assert (probe["message"]["type_name"], probe["message"]["seq"]) == ("NLMSG_NOOP", case["probe_seq"])
        acked = [n for n in walk(tree["root"]) if n["func"] == "netlink_ack"]
        if case["send_errno"]:
            assert tree["message"] is None and tree["error"]["errno"] == case["send_errno"], case
        elif case["dispatched"] == 1:
            ack = case["acks"][str(case["seq"])]
            assert (tree["error"] or {}).get("errno") == (ack or None), (case, tree["error"])
        elif not case["dispatched"]:
            assert not acked and not case["acks"], case
            if case["len"]:
                assert tree["message"]["malformed"], (case, tree["message"])
            else:       # an empty send the kernel took: no message at all
                assert tree["message"] is None, tree
        else:
            assert "malformed" not in tree["message"], case
            errnos = {m["seq"]: m["errno"] for m in tree["messages"]}
            shown = [int(seq) for seq in case["acks"]][:len(errnos)]
            assert sorted(errnos) == shown, (case["case"], errnos)
            acks = {seq: errno.errorcode[case["acks"][str(seq)]] if case["acks"][str(seq)] else None for seq in shown}
            # 100 messages' calls are more than a record holds: the tree is
            # marked truncated, and a message whose ack fell past it shows none
            in_capture = SNAPLEN_MAX // (case["len"] // case["dispatched"])    # headers the capture holds
            assert tree["truncated"] == (case["dispatched"] == 100)
            assert len(errnos) >= min(case["dispatched"], in_capture), (case["case"], errnos)
            assert all(errnos[seq] in (acks[seq], None) if tree["truncated"] else errnos[seq] == acks[seq]
                       for seq in shown), (case, errnos)
