"""nltrace flow on a real kernel, against known workloads.

Each test holds the trees against an independent account of what the
client did: strace's decoding of every netlink syscall iproute2 made, or the
test client's own report of what it sent and what the kernel answered. And
each checks the nesting against the call trees documented in the seeds
(../shared/seeds/), with the functions this kernel inlines allowed to be
absent.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import CLIENT, ROOT
from harness.shapes import N, as_shown, assert_shape, matches, shape
from harness.tracer import Tracer, nltrace


# The documented trees (seeds 000-004), as the kernel runs them.
TO_USER = N("netlink_unicast", N("netlink_sendskb?", N("__netlink_sendskb")))
ACK = N("netlink_ack", TO_USER)


def to_kernel(input_fn, *rcv_skb_children):
    return N("netlink_sendmsg", N("netlink_unicast", N("netlink_unicast_kernel?", N(
        input_fn, N("netlink_rcv_skb", *rcv_skb_children)))))


RTNL_GET_REPLY = to_kernel("rtnetlink_rcv", N("rtnetlink_rcv_msg", TO_USER))
RTNL_GET_ERROR = to_kernel("rtnetlink_rcv", N("rtnetlink_rcv_msg"), ACK)
RTNL_DUMP = to_kernel("rtnetlink_rcv", N("rtnetlink_rcv_msg", N("netlink_dump", N("__netlink_sendskb"))))
GENL_DOIT_REPLY = to_kernel("genl_rcv", N("genl_rcv_msg", N("genl_family_rcv_msg_doit", TO_USER)))
USER_TO_USER = N("netlink_sendmsg", TO_USER)
RECV_DUMP_CONTINUATION = N("netlink_recvmsg", N("netlink_dump", N("__netlink_sendskb")))


def client(*args):
    return [sys.executable, CLIENT, *args]


def sent_by(proc):
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def flag_bits(names):
    from pyroute2 import netlink as nl
    extra = {"NLM_F_NONREC": 0x100, "NLM_F_BULK": 0x200}
    return sum(getattr(nl, n, extra.get(n, 0)) if not n.startswith("0x") else int(n, 16) for n in names)


def sendmsg_trees(trees, pid):
    return sorted((t for t in trees if t["pid"] == pid and t["root"]["func"] == "netlink_sendmsg"),
                  key=lambda t: t["ts_ns"])


def check_against_client(trees, sent, protocol):
    """One sendmsg tree per message the client sent, each decoding to what it sent."""
    pid = sent[0]["pid"]
    mine = sendmsg_trees(trees, pid)
    assert len(mine) == len(sent), (f"{len(mine)} trees for {len(sent)} messages sent: seq "
                                    f"{[t['message']['seq'] for t in mine]} for {[m['seq'] for m in sent]}")
    for tree, msg in zip(mine, sent):
        assert tree["protocol"] == protocol
        assert tree["message"]["type"] == msg["type"]
        assert flag_bits(tree["message"]["flags"]) == msg["flags"]
        assert tree["message"]["seq"] == msg["seq"]
        assert tree["message"]["len"] == msg["len"]
        assert tree["root"]["ret"] == msg["len"]
        if msg.get("errno"):
            assert tree["error"] is not None
            assert (tree["error"]["errno"], tree["error"]["extack"]) == (msg["errno"], msg["extack"])
        elif "errno" in msg:
            assert tree["error"] is None
    return mine


# --- -p, first: alone, before the session's tracer exists -----------------

def test_pid_filter_in_the_kernel():
    """-p filters in BPF: a tracer for one pid sees every tree of that
    process and nothing of the `ip` commands run while it is attached.
    It runs alone: with a second nltrace attached to the same functions, a
    process's first call was missed in 2 of 3 full runs (open; see the issue)."""
    waiting = subprocess.Popen(client("--wait", "--count", "5", "--seq", "900", "getlink", "--index", "1"),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    only = Tracer(nltrace("flow", "--json", "-p", str(waiting.pid)))
    others = [subprocess.run(["ip", "link", "show", "lo"], capture_output=True) for _ in range(3)]
    out, _ = waiting.communicate("go\n", timeout=300)
    others += [subprocess.run(["ip", "link", "show", "lo"], capture_output=True) for _ in range(3)]
    only.stop()                              # drains the ring buffer before it exits
    assert all(o.returncode == 0 for o in others)
    assert only.proc.returncode == 0, only.stderr
    sent = sent_by(subprocess.CompletedProcess([], 0, out, ""))
    assert [m["seq"] for m in sent] == [900, 901, 902, 903, 904]
    # The summary first: a tree missing below is then either counted (lost,
    # incomplete) or was never made.
    summary = [line for line in only.stderr if re.match(r"nltrace: \d+ trees shown", line)]
    assert summary and ", 0 lost, 0 truncated, 0 incomplete" in summary[-1], only.stderr[-3:]
    assert {t["pid"] for t in only.stdout} == {waiting.pid}
    check_against_client(only.stdout, sent, "NETLINK_ROUTE")
    # and its reads: one netlink_recvmsg per answer
    reads = [t for t in only.stdout if t["root"]["func"] == "netlink_recvmsg"]
    assert [t["message"]["seq"] for t in sorted(reads, key=lambda t: t["ts_ns"])] == [900, 901, 902, 903, 904]


# --- iproute2, held against strace --------------------------------------

SYSCALL = re.compile(r"^(\d+) +(sendmsg|sendto|recvmsg|recvfrom)\((\d+), (.*)\) += (-?\d+)(?: (E[A-Z0-9]+))?")
NLHDR = re.compile(r"nlmsg_type=(\w+), nlmsg_flags=([\w|]+), nlmsg_seq=(\d+)")


def strace_netlink(path):
    """The netlink syscalls strace saw: (pid, kind, ret, first header or None)."""
    import errno as errno_mod
    calls = []
    with open(path) as f:
        for line in f:
            m = SYSCALL.match(line)
            if not m or not ("AF_NETLINK" in line or "nlmsg_" in line):
                continue
            pid, name, _fd, body, ret, err = m.groups()
            ret = -getattr(errno_mod, err) if err else int(ret)
            hdr = NLHDR.search(body)
            kind = "netlink_sendmsg" if name.startswith("send") else "netlink_recvmsg"
            calls.append((int(pid), kind, ret, hdr.groups() if hdr else None))
    return calls


def run_ip(tracer, tmp_path, *args):
    log = tmp_path / "strace.txt"
    proc, trees = tracer.run(["strace", "-f", "-qq", "-e", "trace=sendmsg,sendto,recvmsg,recvfrom",
                              "-o", str(log), "ip", *args])
    assert proc.returncode == 0, proc.stderr
    calls = strace_netlink(log)
    assert calls, "strace saw no netlink syscall"
    pid = calls[0][0]
    mine = sorted((t for t in trees if t["pid"] == pid), key=lambda t: t["ts_ns"])
    # One tree per netlink syscall, in order, with the same return value and,
    # for each send, the header iproute2 sent.
    assert [(t["root"]["func"], t["root"]["ret"]) for t in mine] == [(c[1], c[2]) for c in calls]
    for tree, (_pid, kind, _ret, hdr) in zip(mine, calls):
        assert tree["comm"] == "ip"
        assert tree["protocol"] == "NETLINK_ROUTE"
        if kind == "netlink_sendmsg":
            msg_type, flags, seq = hdr
            assert tree["message"]["type_name"] == msg_type
            assert set(tree["message"]["flags"]) == (set(flags.split("|")) - {"0"})
            assert tree["message"]["seq"] == int(seq)
    return mine


def test_ip_link_show_lo(tracer, tmp_path):
    trees = run_ip(tracer, tmp_path, "link", "show", "lo")
    getlink = [t for t in trees if t["message"] and t["message"]["type_name"] == "RTM_GETLINK"
               and t["message"].get("attrs", {}).get("IFLA_IFNAME") == "lo"]
    assert getlink, "no RTM_GETLINK for lo"
    for tree in getlink:
        assert_shape(tree, RTNL_GET_REPLY)
        assert tree["handler"] == "rtnl_getlink"
        assert tree["error"] is None


def test_ip_addr_show(tracer, tmp_path):
    trees = run_ip(tracer, tmp_path, "addr", "show")
    dumps = [t for t in trees if t["root"]["func"] == "netlink_sendmsg"
             and "NLM_F_DUMP" in t["message"]["flags"]]
    assert {t["message"]["type_name"] for t in dumps} >= {"RTM_GETADDR"}
    for t in dumps:
        assert_shape(t, RTNL_DUMP)
    handlers = {t["message"]["type_name"]: t["handler"] for t in dumps}
    assert handlers["RTM_GETADDR"] in ("rtnl_dump_all", "inet_dump_ifaddr")


@pytest.fixture
def dummy_links():
    """Enough links that a link dump spans several skbs, so it continues in recvmsg."""
    names = [f"nltd{i}" for i in range(40)]
    for name in names:
        subprocess.run(["ip", "link", "add", name, "type", "dummy"], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_ip_detail_link_dump_continues_in_recvmsg(tracer, tmp_path, dummy_links):
    trees = run_ip(tracer, tmp_path, "-d", "link", "show")
    dump = [t for t in trees if t["root"]["func"] == "netlink_sendmsg"
            and t["message"]["type_name"] == "RTM_GETLINK" and "NLM_F_DUMP" in t["message"]["flags"]]
    assert len(dump) == 1
    assert_shape(dump[0], RTNL_DUMP)
    assert dump[0]["handler"] == "rtnl_dump_ifinfo"
    continued = [t for t in trees if matches(as_shown([RECV_DUMP_CONTINUATION]), [shape(t["root"])])]
    assert continued, "no netlink_recvmsg tree continued the dump"
    # What the readers got back: link messages, then the dump's end.
    received = [t["message"]["type_name"] for t in trees
                if t["root"]["func"] == "netlink_recvmsg" and t["message"]]
    assert "RTM_NEWLINK" in received and "NLMSG_DONE" in received


# --- the test client, held against what it sent -------------------------

def test_genl_getfamily_nlctrl(tracer):
    proc, trees = tracer.run(client("--count", "3", "--seq", "500", "getfamily", "--name", "nlctrl"))
    assert proc.returncode == 0, proc.stderr
    sent = sent_by(proc)
    assert len(sent) == 3
    for tree in check_against_client(trees, sent, "NETLINK_GENERIC"):
        assert_shape(tree, GENL_DOIT_REPLY)
        assert tree["message"]["family"] == "nlctrl"
        assert tree["message"]["cmd"] == 3
        assert tree["message"]["cmd_name"] == "CTRL_CMD_GETFAMILY"
        assert tree["message"]["attrs"]["CTRL_ATTR_FAMILY_NAME"] == "nlctrl"
        assert tree["handler"] == "ctrl_getfamily"


def test_getlink_unknown_ifindex_is_enodev(tracer):
    proc, trees = tracer.run(client("--count", "2", "getlink", "--index", "987654"))
    sent = sent_by(proc)
    assert [m["errno"] for m in sent] == [19, 19]
    for tree in check_against_client(trees, sent, "NETLINK_ROUTE"):
        assert_shape(tree, RTNL_GET_ERROR)
        assert tree["error"]["name"] == "ENODEV"
        assert tree["message"]["fields"]["index"] == 987654
        assert tree["handler"] == "rtnl_getlink"
        ack = tree["root"]["children"][0]
        assert '"ack_error":-19' in json.dumps(ack, separators=(",", ":"))


def test_enodev_with_extack(tracer):
    proc, trees = tracer.run(client("setlink-bridge", "--index", "987654"))
    sent = sent_by(proc)
    assert sent[0]["errno"] == 19 and sent[0]["extack"], sent
    (tree,) = check_against_client(trees, sent, "NETLINK_ROUTE")
    assert tree["error"] == {"errno": 19, "name": "ENODEV", "extack": sent[0]["extack"]}
    assert tree["handler"] == "rtnl_bridge_setlink"
    assert_shape(tree, RTNL_GET_ERROR)


def test_usersock_between_two_processes(tracer):
    port = 31337
    receiver = subprocess.Popen(client("--count", "3", "usersock-recv", "--port", str(port)),
                                stdout=subprocess.PIPE, text=True)
    ready = json.loads(receiver.stdout.readline())
    assert ready["ready"]
    mark = tracer.mark()
    proc = subprocess.run(client("--count", "3", "--seq", "70", "usersock-send", "--port", str(port)),
                          capture_output=True, text=True)
    out, _ = receiver.communicate(timeout=60)
    trees = tracer.since(mark)
    got = [json.loads(line) for line in out.splitlines()]
    sent = sent_by(proc)
    assert [m["seq"] for m in got] == [m["seq"] for m in sent] == [70, 71, 72]
    for tree in check_against_client(trees, sent, "NETLINK_USERSOCK"):
        assert_shape(tree, USER_TO_USER)
        assert tree["message"]["portid"] == sent[0]["portid"]
    reads = sorted((t for t in trees if t["pid"] == ready["pid"] and t["message"]),
                   key=lambda t: t["ts_ns"])
    assert [(t["message"]["type"], t["message"]["seq"]) for t in reads] == [(32, 70), (32, 71), (32, 72)]
    for t in reads:
        assert_shape(t, N("netlink_recvmsg"))
        assert t["protocol"] == "NETLINK_USERSOCK"



# --- a burst at full rate -----------------------------------------------

NLLOAD = os.path.join(ROOT, ".cache", "bench", "nlload")   # built by `make test-vm`
BURST = 10000


def test_a_full_rate_burst_loses_no_tree(tracer):
    """bench/nlload sends BURST RTM_GETLINKs back to back, far faster than
    Python decodes trees under emulation: flow stands back while the ring
    buffer holds the burst, then catches up (nltrace/sources/pacing.py).
    Every request and every read of its reply must come through, in order
    (and the module's tracer must end with 0 lost)."""
    assert os.access(NLLOAD, os.X_OK), "bench/nlload.c is not built: `make test-vm` builds it"
    mark = tracer.mark()
    load = subprocess.run([NLLOAD, "get", "--count", str(BURST)], capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    assert json.loads(load.stdout)["requests"] == BURST
    trees = [t for t in tracer.since(mark) if t["comm"] == "nlload"]
    sends = [t for t in trees if t["root"]["func"] == "netlink_sendmsg"]
    reads = [t for t in trees if t["root"]["func"] == "netlink_recvmsg"]
    assert [t["message"]["seq"] for t in sends] == list(range(1, BURST + 1))
    assert {t["message"]["type_name"] for t in sends} == {"RTM_GETLINK"}
    assert {t["handler"] for t in sends} == {"rtnl_getlink"}
    assert [t["message"]["seq"] for t in reads] == list(range(1, BURST + 1))
