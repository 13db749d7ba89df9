"""nltrace flow on a real kernel, against known workloads.

Each test holds the trees against an independent account of what the
client did: strace's decoding of every netlink syscall iproute2 made, or the
test client's own report of what it sent and what the kernel answered. And
each checks the nesting against the call trees documented in the seeds
(../shared/seeds/), with the functions this kernel inlines allowed to be
absent.
"""

import errno
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import CLIENT, ROOT
from harness.shapes import N, as_shown, assert_shape, hookable_functions, matches, shape, traceable
from harness.tracer import Tracer, nltrace
from nltrace.catalogue import INLINED_NODES
from nltrace.decode import protocol_name
from nltrace.trees import walk


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


# --- -p: alone, before the session's tracer exists ------------------------

def test_pid_filter_in_the_kernel():
    """-p filters in BPF: a tracer for one pid sees every tree of that
    process and nothing of the `ip` commands run while it is attached,
    the first of its messages included (four tracers at once: test_faults.py)."""
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

SYSCALL = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)(?: (E[A-Z0-9]+))?")
NLHDR = re.compile(r"nlmsg_type=(\w+), nlmsg_flags=([\w|]+), nlmsg_seq=(\d+)")
ROOT_OF = {"sendmsg": "netlink_sendmsg", "sendto": "netlink_sendmsg", "recvmsg": "netlink_recvmsg",
           "recvfrom": "netlink_recvmsg", "socket": "netlink_create", "bind": "netlink_bind",
           "connect": "netlink_connect"}
STRACED = "trace=" + ",".join(ROOT_OF)


def strace_netlink(path):
    """The netlink syscalls strace saw: (pid, the root nltrace shows for it,
    ret as that function returns it, first header or None)."""
    import errno as errno_mod
    calls = []
    with open(path) as f:
        for line in f:
            m = SYSCALL.match(line)
            if not m or m.group(2) not in ROOT_OF or not ("AF_NETLINK" in line or "nlmsg_" in line):
                continue
            pid, name, body, ret, err = m.groups()
            ret = -getattr(errno_mod, err) if err else int(ret)
            if name == "socket" and ret > 0:
                ret = 0      # the fd; netlink_create returns 0
            hdr = NLHDR.search(body)
            calls.append((int(pid), ROOT_OF[name], ret, hdr.groups() if hdr else None))
    return calls


def run_ip(tracer, tmp_path, *args):
    log = tmp_path / "strace.txt"
    proc, trees = tracer.run(["strace", "-f", "-qq", "-e", STRACED, "-o", str(log), "ip", *args])
    assert proc.returncode == 0, proc.stderr
    calls = strace_netlink(log)
    assert calls, "strace saw no netlink syscall"
    pid = calls[0][0]
    mine = sorted((t for t in trees if t["pid"] == pid), key=lambda t: t["ts_ns"])
    # Each socket is released once, at its close or at ip's exit (which
    # strace does not show as a call).
    released = [t for t in mine if t["root"]["func"] == "netlink_release"]
    assert len(released) == sum(1 for c in calls if c[1] == "netlink_create")
    mine = [t for t in mine if t["root"]["func"] != "netlink_release"]
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
    return [t for t in mine if t["message"]]


@pytest.mark.kernels
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
    # the dump's start (-EINTR) is no error: --errors-only shows none of it
    from nltrace.filters import Filters
    assert [t for t in trees if Filters(errors_only=True).match(t)] == []
    starts = [n for t in dumps for n in walk(t["root"]) if n.get("dump_started")]
    assert len(starts) == len(dumps) and all("errno" not in n for n in starts)


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
    continuation = as_shown([RECV_DUMP_CONTINUATION], hookable_functions())
    continued = [t for t in trees if matches(continuation, [shape(t["root"])])]
    assert continued, "no netlink_recvmsg tree continued the dump"
    # What the readers got back: link messages, then the dump's end.
    received = [t["message"]["type_name"] for t in trees
                if t["root"]["func"] == "netlink_recvmsg" and t["message"]]
    assert "RTM_NEWLINK" in received and "NLMSG_DONE" in received


# --- the test client, held against what it sent -------------------------

@pytest.mark.kernels
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


@pytest.mark.kernels
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




def test_every_message_of_one_sendmsg(tracer):
    """Three RTM_GETLINK in one buffer, the second for a missing ifindex:
    one tree whose messages are the three, in order, each with its seq and
    its ack's errno as the client read it."""
    proc, trees = tracer.run(client("--seq", "600", "batch", "--indexes", "1", "987654", "1"))
    assert proc.returncode == 0, proc.stderr
    sent = sent_by(proc)
    (tree,) = sendmsg_trees(trees, sent[0]["pid"])
    assert tree["root"]["ret"] == sum(m["len"] for m in sent)
    got = [(m["type_name"], flag_bits(m["flags"]), m["seq"], m["errno"]) for m in tree["messages"]]
    want = [("RTM_GETLINK", m["flags"], m["seq"], errno.errorcode[m["errno"]] if m["errno"] else None)
            for m in sent]
    assert got == want
    assert len([n for n in walk(tree["root"]) if n["func"] == "rtnetlink_rcv_msg"]) == 3


# --- protocols beyond route and generic, by name ------------------------

def test_ethtool_by_name(tracer):
    """ethtool's generic-netlink requests name family and command (from the
    kernel's uapi headers)."""
    proc, trees = tracer.run(["ethtool", "lo"])
    assert proc.returncode == 0, proc.stderr
    sends = [t for t in trees if t["comm"] == "ethtool" and t["root"]["func"] == "netlink_sendmsg"
             and t["message"]["family"] == "ethtool"]
    assert sends, "ethtool sent nothing over netlink"
    for t in sends:
        assert t["message"]["cmd_name"].startswith("ETHTOOL_MSG_") and t["message"]["cmd_name"].endswith("_GET")
    assert "ETHTOOL_MSG_LINKINFO_GET" in {t["message"]["cmd_name"] for t in sends}


NFT_HEADERS = re.compile(r"nlmsg_type=([\w<|]+), nlmsg_flags=([\w|]+), nlmsg_seq=(\d+)")


def test_every_message_of_an_nft_batch(tracer, tmp_path):
    """nft -f with a table and two chains sends one batch (begin, table,
    chains, end) in one sendmsg: its tree lists each message, with the
    names and seqs strace decodes, and runs it in nfnetlink_rcv_batch."""
    log, script = tmp_path / "strace.txt", tmp_path / "batch.nft"
    script.write_text("add table inet nltrace_test\nadd chain inet nltrace_test a\nadd chain inet nltrace_test b\n")
    proc, trees = tracer.run(["strace", "-f", "-qq", "-e", "trace=sendmsg", "-s", "4096", "-o", str(log),
                              "nft", "-f", str(script)])
    subprocess.run(["nft", "delete", "table", "inet", "nltrace_test"], check=False)
    assert proc.returncode == 0, proc.stderr
    (batch_call,) = [line for line in log.read_text().splitlines() if "NFNL_MSG_BATCH_BEGIN" in line]
    want = [(kind.split("|")[-1], set(flags.split("|")), int(seq))
            for kind, flags, seq in NFT_HEADERS.findall(batch_call)]
    assert len(want) == 5, batch_call
    pid = int(batch_call.split()[0])
    (tree,) = [t for t in sendmsg_trees(trees, pid) if t["message"]["type_name"] == "NFNL_MSG_BATCH_BEGIN"]
    assert tree["protocol"] == "NETLINK_NETFILTER"
    assert [(m["type_name"], set(m["flags"]), m["seq"]) for m in tree["messages"]] == want
    assert all(m["errno"] is None for m in tree["messages"])
    assert [n["func"] for n in walk(tree["root"])].count("nfnetlink_rcv_batch") == 1


def test_audit_by_name(tracer):
    """NETLINK_AUDIT: three AUDIT_GET, three trees named from linux/audit.h."""
    proc, trees = tracer.run(client("--count", "3", "--seq", "700", "audit-get"))
    assert proc.returncode == 0, proc.stderr
    sent = sent_by(proc)
    mine = sendmsg_trees(trees, sent[0]["pid"])
    assert [(t["protocol"], t["message"]["type_name"], t["message"]["seq"]) for t in mine] == \
        [("NETLINK_AUDIT", "AUDIT_GET", m["seq"]) for m in sent]


# --- a socket's life ----------------------------------------------------

def test_socket_lifecycle(tracer):
    """N sockets created, bound to two groups, connected and closed: N trees
    of each, with the portid the client read back; the autobind of a first
    send inside that send's tree; EPROTONOSUPPORT and EADDRINUSE as errors."""
    n, groups = 5, 0x11      # RTMGRP_LINK | RTMGRP_IPV4_IFADDR
    proc, trees = tracer.run(client("--count", str(n), "--seq", "500", "sockets", "--groups", hex(groups)))
    assert proc.returncode == 0, proc.stderr
    calls = sent_by(proc)
    pid = calls[0]["pid"]
    mine = sorted((t for t in trees if t["pid"] == pid and t.get("socket") is not None), key=lambda t: t["ts_ns"])
    by_root = {}
    for t in mine:
        by_root.setdefault(t["root"]["func"], []).append(t)

    created = [t for t in by_root["netlink_create"] if not t["error"]]
    assert len(created) == n + 2      # the N, the autobound one, the one bind() fails on
    for t in created:
        assert t["protocol"] == "NETLINK_ROUTE" and t["socket"]["kern"] is False
        assert t["socket"]["netns"]
        assert_shape(t, N("netlink_create", N("__netlink_create?")))
    (unsupported,) = [t for t in by_root["netlink_create"] if t["error"]]
    assert unsupported["error"]["name"] == "EPROTONOSUPPORT"

    bound = [c["portid"] for c in calls if c["action"] == "bind" and not c["errno"]]
    binds = [t for t in by_root["netlink_bind"] if not t["error"]]
    assert [t["socket"]["portid"] for t in binds] == bound
    for t in binds:
        assert t["socket"]["groups"] == [1, 5] and t["socket"]["portid_asked"] == 0
        assert_shape(t, N("netlink_bind", N("netlink_autobind?", N("netlink_insert?"))))
    (in_use,) = [t for t in by_root["netlink_bind"] if t["error"]]
    (refused,) = [c for c in calls if c["action"] == "bind" and c["errno"]]
    assert in_use["error"]["name"] == "EADDRINUSE" and in_use["socket"]["portid_asked"] == refused["portid"]
    assert "portid" not in in_use["socket"]      # the portid is the other socket's

    assert len(by_root["netlink_connect"]) == n
    # Each socket's trees share its struct socket: create, bind, connect, close.
    for i in range(n):
        socks = {by_root[f][i]["socket"]["sock"] for f in ("netlink_create", "netlink_bind",
                                                          "netlink_connect", "netlink_release")}
        assert len(socks) == 1, socks
    assert len(by_root["netlink_release"]) == n + 2   # and the autobound one, and the one bind() failed on

    (autobound,) = [c["portid"] for c in calls if c["action"] == "send"]
    (send,) = [t for t in trees if t["pid"] == pid and t["message"] and t["message"]["seq"] == 500]
    inserted = [node["portid"] for node in walk(send["root"]) if node["func"] == "netlink_insert"]
    autobinds = [node for node in walk(send["root"]) if node["func"] == "netlink_autobind"]
    assert autobinds and inserted == [autobound]
    # each close() names the portid it frees; the socket bind() failed on had none
    freed = [t["socket"].get("portid") for t in by_root["netlink_release"]]
    assert sorted(filter(None, freed)) == sorted(bound + [autobound]) and freed.count(None) == 1



def test_a_group_that_needs_privileges_is_eperm(tracer):
    """bind() to a multicast group without the capability it needs: EPERM
    from netlink_bind itself (NETLINK_XFRM lets no unprivileged socket
    listen) and from the family's bind callback (NETLINK_AUDIT's log group
    needs CAP_AUDIT_READ). Root without capabilities, so the client can
    still read its files."""
    for protocol in (6, 9):
        proc, trees = tracer.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
                                  *client("bind", "--protocol", str(protocol), "--groups", "1")])
        assert proc.returncode == 0, proc.stderr
        (sent,) = sent_by(proc)
        assert sent["errno"] == errno.EPERM
        (bind,) = [t for t in trees if t["pid"] == sent["pid"] and t["root"]["func"] == "netlink_bind"]
        assert bind["error"]["name"] == "EPERM" and bind["socket"]["groups"] == [1]
        assert bind["protocol"] == protocol_name(protocol)


def netlink_sockets(netns=None):
    """The rows of /proc/net/netlink (of netns, else this namespace's), each
    as {column: int}: Eth is the protocol, Pid the portid, Groups (hex) the
    first 32 groups."""
    argv = ["cat", "/proc/net/netlink"]
    out = subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv,
                         check=True, capture_output=True, text=True).stdout.splitlines()
    columns = out[0].split()[1:]
    return [{column: int(value, 16 if column == "Groups" else 10) for column, value in zip(columns, line.split()[1:])}
            for line in out[1:]]


def netlink_drops(portid):
    """The kernel's count of messages dropped for a NETLINK_ROUTE socket."""
    (drops,) = [row["Drops"] for row in netlink_sockets() if row["Eth"] == 0 and row["Pid"] == portid]
    return drops


@pytest.mark.kernels
def test_broadcast_fan_out_and_links(tracer):
    """Two listeners on RTMGRP_LINK and one that never reads (its buffer at
    the kernel's minimum): each notification of 6 `link add` and 6 `link
    del` has one delivered copy per reader, each read links back to the
    tree that queued it, and the copies the full buffer refused are dropped
    nodes, as many as the kernel counted. Where the kernel inlines
    __netlink_sendskb everywhere (5.10), its stand-in shows each copy as an
    inlined node; where neither can be traced, the trees must claim no copy,
    and show every read and every refusal."""
    hookable = hookable_functions()
    sendskb_traced = traceable("__netlink_sendskb", hookable)
    copies_shown = sendskb_traced or traceable(INLINED_NODES["__netlink_sendskb"], hookable)
    # marked before the listeners bind: a notification the kernel sends as
    # they start (a previous test's link going away) is among the trees too
    mark = tracer.mark()
    listeners = [subprocess.Popen(client("listen", "--groups", "1", *extra), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
                 for extra in ((), (), ("--rcvbuf", "1", "--no-read"))]
    ready = [json.loads(p.stdout.readline()) for p in listeners]
    readers, full = ready[:2], ready[2]
    # Enough notifications to fill the minimum buffer: the copies go in while
    # it holds less than its size, so the first ones fit.
    names = [f"nltbc{i}" for i in range(6)]
    batch = "".join(f"link add {n} type dummy\n" for n in names) + "".join(f"link del {n}\n" for n in names)
    subprocess.run(["ip", "-batch", "-"], check=True, text=True, input=batch)
    tracer.since(mark)
    time.sleep(2)     # the kernel's later notifications (linkwatch) too
    drops = netlink_drops(full["portid"])
    got = []
    for p in listeners:
        out, _ = p.communicate("stop\n", timeout=60)
        got.append([json.loads(line) for line in out.splitlines()])
    trees = tracer.since(mark)      # every read the listeners made
    by_id = {t["id"]: t for t in trees}
    portids = {r["portid"]: r["pid"] for r in ready}
    # ip's own trees notify; the kernel's linkwatch worker notifies too, later, in trees of its own
    changes = [t for t in trees if t["comm"] == "ip" and t["root"]["func"] == "netlink_sendmsg"
               and t["message"]["type_name"] in ("RTM_NEWLINK", "RTM_DELLINK") and not t["error"]]
    assert len(changes) == 2 * len(names)
    copies = [(t, d) for t in trees for d in t.get("deliveries", []) if d["portid"] in portids]
    assert not any(t["truncated"] for t, _ in copies)
    queued = [n for t, _ in copies for n in walk(t["root"]) if n["func"] == "__netlink_sendskb"]
    assert all(n.get("inlined", False) is not sendskb_traced for n in queued)
    # A link is named on the side that ended last: the read's "from", or the
    # delivery's "read_by" when the (blocking) read returned first.
    source_of = {t["id"]: t["from"]["tree"] for t in trees if "from" in t}
    source_of.update({d["read_by"]["tree"]: t["id"] for t, d in copies if "read_by" in d})
    for reader, lines in zip(readers, got):
        mine = [(t, d) for t, d in copies if d["portid"] == reader["portid"]]
        reads = [t for t in trees if t["pid"] == reader["pid"] and t["root"]["func"] == "netlink_recvmsg"]
        if not copies_shown:
            assert mine == [] and len(reads) == len(lines), (len(reads), lines)
            continue
        assert all(d["via"] == "broadcast" and not d["dropped"] for _, d in mine)
        assert all(any(d["portid"] == reader["portid"] for d in t.get("deliveries", [])) for t in changes)
        # one read per copy, each linked to the tree that queued it
        assert len(reads) == len(mine) == len(lines), (len(reads), len(mine), lines)
        for read in reads:
            assert read["id"] in source_of, (read, [(t["id"], t["ts_ns"], n) for t in trees for n in walk(t["root"])
                                                   if n.get("skb") == read.get("skb")])
            source = by_id[source_of[read["id"]]]
            assert any(d["portid"] == reader["portid"] for d in source["deliveries"]), read
    refused = [d for _, d in copies if d["portid"] == full["portid"] and d["dropped"]]
    assert drops > 0 and len(refused) == drops
    # a listener known from its reads is named in the deliveries that follow
    assert not copies_shown or any(d.get("pid") == readers[0]["pid"] for _, d in copies)


def kernel_sockets(netns):
    """The protocols of the kernel's sockets in netns (kernel sockets have
    portid 0; a fresh namespace has no user socket)."""
    return sorted(row["Eth"] for row in netlink_sockets(netns) if row["Pid"] == 0)


def test_kernel_sockets_of_a_namespace(tracer):
    """ip netns add: one kernel-socket tree per protocol the kernel opened in
    the namespace (as its /proc/net/netlink lists them), in ip's process;
    ip netns del: as many releases, from the kernel's cleanup worker."""
    from nltrace.decode import PROTOCOL_VALUES
    name = "nltrace-test"
    proc, trees = tracer.run(["ip", "netns", "add", name])
    assert proc.returncode == 0, proc.stderr
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
        expected = kernel_sockets(name)
    finally:
        mark = tracer.mark()
        subprocess.run(["ip", "netns", "del", name], check=True)
    created = [t for t in trees if t["root"]["func"] == "__netlink_kernel_create"
               and t["socket"]["netns"] == inode]
    assert sorted(PROTOCOL_VALUES[t["protocol"]] for t in created) == expected
    assert {t["comm"] for t in created} == {"ip"}
    by_protocol = {t["protocol"]: t for t in created}
    assert by_protocol["NETLINK_ROUTE"]["handler"] == "rtnetlink_rcv"
    assert by_protocol["NETLINK_ROUTE"]["socket"]["nr_groups"] > 0
    assert by_protocol["NETLINK_GENERIC"]["handler"] == "genl_rcv"
    # The namespace is cleaned up later, by a kernel worker.
    released = lambda: [t for t in tracer.stdout[mark:] if t["root"]["func"] == "netlink_kernel_release"  # noqa: E731
                        and t["socket"]["netns"] == inode]
    tracer.wait_for(lambda: len(released()) >= len(expected), f"{len(expected)} kernel socket releases")
    assert sorted(PROTOCOL_VALUES[t["protocol"]] for t in released()) == expected

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

