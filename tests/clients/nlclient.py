"""A netlink client for the real-kernel tests.

It sends exactly the messages it is told to, and prints one JSON line per
message with what it sent (type, flags, seq) and what the kernel answered
(errno, extack): the oracle the tests hold nltrace's trees against.
Messages are built with pyroute2's declarative classes.
"""

import argparse
import json
import os
import random
import socket
import struct
import sys

from pyroute2.netlink import (CTRL_CMD_GETFAMILY, GENL_ID_CTRL, NETLINK_GENERIC, NETLINK_ROUTE,
                              NETLINK_USERSOCK, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
                              ctrlmsg, nlmsg, nlmsgerr)
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETSTATS, RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
USER_MSG_TYPE = 0x20      # above NLMSG_MIN_TYPE: a user-to-user message type
NETLINK_AUDIT = 9
AUDIT_GET = 1000          # linux/audit.h: the audit status
NLMSG_HDRLEN = 16
SO_RCVBUFFORCE = 33
UNUSED_PROTOCOL = 31      # below MAX_LINKS (32), and no kernel registers it


class capped_ack(nlmsg):
    """NLMSG_ERROR on a NETLINK_CAP_ACK socket: the errno, the request's
    header, then the extack attributes (pyroute2's nlmsgerr reads the
    attributes from right after the errno, so it misses them)."""
    fields = (("error", "i"), ("req_len", "I"), ("req_type", "H"), ("req_flags", "H"),
              ("req_seq", "I"), ("req_pid", "I"))
    nla_map = nlmsgerr.nla_map


class usermsg(nlmsg):
    """A user-to-user message: the header and a fixed payload."""
    fields = (("value", "I"),)


def open_socket(protocol, portid=0):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.bind((portid, 0))
    return sock


def send(sock, msg, msg_type, flags, seq, dest=0):
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    sock.sendto(msg.data, (dest, 0))
    return {"pid": os.getpid(), "type": msg_type, "flags": flags, "seq": seq,
            "len": len(msg.data)}


def read_answer(sock, seq):
    """Read until the answer to seq: a reply, an error or an ack."""
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            head = nlmsg(data[offset:offset + 16])
            head.decode()
            header = head["header"]
            if header["sequence_number"] == seq and header["type"] == NLMSG_ERROR:
                ack = capped_ack(data[offset:offset + header["length"]])
                ack.decode()
                return {"errno": -ack["error"], "extack": ack.get_attr("NLMSGERR_ATTR_MSG"),
                        "reply_type": NLMSG_ERROR}
            if header["sequence_number"] == seq and header["type"] != NLMSG_DONE:
                return {"errno": 0, "extack": None, "reply_type": header["type"]}
            offset += (header["length"] + 3) & ~3


def request(sock, msg, msg_type, flags, seq):
    out = send(sock, msg, msg_type, flags, seq)
    out.update(read_answer(sock, seq))
    print(json.dumps(out), flush=True)


def getlink(args):
    sock = open_socket(NETLINK_ROUTE)
    for i in range(args.count):
        msg = ifinfmsg()
        msg["index"] = args.index
        request(sock, msg, RTM_GETLINK, NLM_F_REQUEST | args.flags, args.seq + i)


def setlink_bridge(args):
    """RTM_SETLINK for AF_BRIDGE: rtnl_bridge_setlink() answers an unknown
    ifindex with ENODEV and the extack "unknown ifindex"."""
    sock = open_socket(NETLINK_ROUTE)
    for i in range(args.count):
        msg = ifinfmsg()
        msg["family"] = socket.AF_BRIDGE
        msg["index"] = args.index
        request(sock, msg, RTM_SETLINK, NLM_F_REQUEST | args.flags, args.seq + i)


def getstats(args):
    sock = open_socket(NETLINK_ROUTE)
    for i in range(args.count):
        msg = ifstatsmsg()
        msg["ifindex"] = args.index
        msg["filter_mask"] = 1
        request(sock, msg, RTM_GETSTATS, NLM_F_REQUEST | args.flags, args.seq + i)


def getfamily(args):
    sock = open_socket(NETLINK_GENERIC)
    for i in range(args.count):
        msg = ctrlmsg()
        msg["cmd"] = CTRL_CMD_GETFAMILY
        msg["version"] = 1
        msg["attrs"] = [("CTRL_ATTR_FAMILY_NAME", args.name)]
        request(sock, msg, GENL_ID_CTRL, NLM_F_REQUEST | args.flags, args.seq + i)


def audit_get(args):
    """AUDIT_GET: the kernel's audit status (its reply comes from a kernel thread)."""
    sock = open_socket(NETLINK_AUDIT)
    for i in range(args.count):
        request(sock, nlmsg(), AUDIT_GET, NLM_F_REQUEST | args.flags, args.seq + i)


def bind_groups(args):
    """One socket of --protocol bound to --groups: prints the errno (0 if it
    bound), as a process without the capabilities a group needs sees it."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, args.protocol)
    try:
        sock.bind((0, args.groups))
        err = 0
    except OSError as e:
        err = e.errno
    print(json.dumps({"pid": os.getpid(), "action": "bind", "errno": err}), flush=True)


def batch(args):
    """RTM_GETLINK for each --indexes, all in one sendmsg, each with
    NLM_F_ACK; then every answer read. One JSON line per message: what was
    sent, and the errno of its ack."""
    sock = open_socket(NETLINK_ROUTE)
    buffer, sent = b"", []
    for i, index in enumerate(args.indexes):
        msg = ifinfmsg()
        msg["index"] = index
        msg["header"].update(type=RTM_GETLINK, flags=NLM_F_REQUEST | NLM_F_ACK, sequence_number=args.seq + i)
        msg.encode()
        buffer += bytes(msg.data)
        sent.append({"pid": os.getpid(), "type": RTM_GETLINK, "flags": NLM_F_REQUEST | NLM_F_ACK,
                     "seq": args.seq + i, "len": len(msg.data)})
    sock.send(buffer)
    for out in sent:
        out.update(read_answer(sock, out["seq"]))
        if out["reply_type"] != NLMSG_ERROR:     # a reply, then its ack
            out.update(read_answer(sock, out["seq"]), reply_type=out["reply_type"])
        print(json.dumps(out), flush=True)


def mix(args):
    """N RTM_GETLINK for ifindex 1, then M CTRL_CMD_GETFAMILY for nlctrl."""
    for fn, count, extra in ((getlink, args.getlink, {"index": 1}), (getfamily, args.getfamily, {"name": "nlctrl"})):
        fn(argparse.Namespace(count=count, seq=args.seq, flags=args.flags, **extra))


def usersock_recv(args):
    sock = open_socket(NETLINK_USERSOCK, args.port)
    print(json.dumps({"pid": os.getpid(), "ready": True}), flush=True)
    for _ in range(args.count):
        msg = usermsg(sock.recv(65536))
        msg.decode()
        print(json.dumps({"pid": os.getpid(), "type": msg["header"]["type"],
                          "seq": msg["header"]["sequence_number"],
                          "sender": msg["header"]["pid"], "value": msg["value"]}), flush=True)


def usersock_send(args):
    sock = open_socket(NETLINK_USERSOCK)
    portid = sock.getsockname()[0]
    for i in range(args.count):
        msg = usermsg()
        msg["value"] = i
        msg["header"]["pid"] = portid
        out = send(sock, msg, USER_MSG_TYPE, NLM_F_REQUEST | args.flags, args.seq + i, dest=args.port)
        print(json.dumps(dict(out, portid=portid)), flush=True)


def sockets(args):
    """N sockets each created, bound to groups, connected to the kernel and
    closed; then one whose first send binds it (autobind), a protocol no
    kernel has (EPROTONOSUPPORT) and a bind to a portid in use (EADDRINUSE).
    One JSON line per call: what it was, the portid, the errno."""
    def report(action, portid=None, err=0):
        print(json.dumps({"pid": os.getpid(), "action": action, "portid": portid, "errno": err}), flush=True)

    for _ in range(args.count):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        report("socket")
        sock.bind((0, args.groups))
        portid = sock.getsockname()[0]
        report("bind", portid)
        sock.connect((0, 0))
        report("connect", portid)
        sock.close()
        report("close", portid)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    msg = ifinfmsg()
    msg["index"] = 1
    send(sock, msg, RTM_GETLINK, NLM_F_REQUEST, args.seq)
    report("send", sock.getsockname()[0])
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, UNUSED_PROTOCOL)
    except OSError as e:
        report("socket", err=e.errno)
    taken = sock.getsockname()[0]
    other = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        other.bind((taken, 0))
    except OSError as e:
        report("bind", taken, e.errno)
    other.close()
    sock.close()


def listen(args):
    """A listener on --groups (nl_groups): prints its pid and portid, then
    the type of each message it reads, until a line on stdin. With --rcvbuf
    a receive buffer that small (the kernel's minimum at least); with
    --no-read it reads nothing, so its buffer fills."""
    import select
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    if args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.bind((0, args.groups))
    print(json.dumps({"pid": os.getpid(), "portid": sock.getsockname()[0], "ready": True}), flush=True)
    watched = [sys.stdin] if args.no_read else [sys.stdin, sock]
    while True:
        readable, _, _ = select.select(watched, [], [])
        if sys.stdin in readable:
            return
        msg = nlmsg(sock.recv(65536))
        msg.decode()
        print(json.dumps({"pid": os.getpid(), "type": msg["header"]["type"]}), flush=True)


# A request each protocol answers, as (type, body): RTM_GETLINK of ifindex 1;
# CTRL_CMD_GETFAMILY without a name (EINVAL); nf_tables' GETGEN; a unix
# socket's diag by inode 0 (ENOENT); XFRM_MSG_GETSA of nothing (ESRCH); AUDIT_GET.
REQUESTS = {NETLINK_ROUTE: (RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 1, 0, 0)),
            NETLINK_GENERIC: (GENL_ID_CTRL, bytes([CTRL_CMD_GETFAMILY, 1, 0, 0])),
            12: (10 << 8 | 16, bytes(4)),
            4: (20, struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xffffffff, 0, 0, 0xffffffff, 0xffffffff)),
            6: (0x12, bytes(16) + struct.pack("=IHBx", 0, socket.AF_INET, 50)),
            NETLINK_AUDIT: (AUDIT_GET, b"")}
UNKNOWN_TYPE = 0x7ff0
PROBE_SEQ = 1 << 20


def header(nlmsg_len, msg_type, flags, seq):
    """A bare nlmsghdr packed by hand: these sends are wrong on purpose
    (lengths that lie), which pyroute2's encoder would correct."""
    return struct.pack("=IHHII", nlmsg_len, msg_type, flags, seq, 0)


def malformed_cases(protocol, seq):
    """(case, its first seq, bytes of one sendmsg, how many messages the
    kernel dispatches); each case's seqs start 1000 past the last's."""
    msg_type, body = REQUESTS[protocol]
    flags = NLM_F_REQUEST | NLM_F_ACK

    def request(seq, size=NLMSG_HDRLEN + len(body), type_=msg_type):
        return header(size, type_, flags, seq) + body + bytes(size - NLMSG_HDRLEN - len(body))
    noise = random.Random(protocol)
    aligned = (NLMSG_HDRLEN + len(body) + 3) & ~3
    cases = (("shorter than a header", lambda seq: request(seq)[:10], 0),
             ("empty", lambda seq: b"", 0),
             ("nlmsg_len 0", lambda seq: header(0, msg_type, flags, seq) + bytes(16), 0),
             ("nlmsg_len beyond the send", lambda seq: header(200, msg_type, flags, seq) + bytes(16), 0),
             ("unknown type", lambda seq: request(seq, type_=UNKNOWN_TYPE), 1),
             ("64 KiB", lambda seq: request(seq, size=65536), 1),
             ("100 in one sendmsg", lambda seq: b"".join(request(seq + i, size=aligned) for i in range(100)), 100),
             ("random bytes", lambda seq: noise.randbytes(48), None),
             ("random body", lambda seq: header(64, msg_type, flags, seq) + noise.randbytes(48), 1))
    for i, (case, make, dispatched) in enumerate(cases):
        data = make(seq + 1000 * i)
        if dispatched is None:     # random: whether its header holds, as netlink_rcv_skb checks it
            dispatched = int(NLMSG_HDRLEN <= struct.unpack_from("=I", data)[0] <= len(data))
        yield case, seq + 1000 * i, data, dispatched


def read_acks(sock, probe_seq):
    """The errno of each ack read before the probe's ack, by seq."""
    acks = {}
    while True:
        data = sock.recv(1 << 17)
        offset = 0
        while offset + NLMSG_HDRLEN <= len(data):
            length, msg_type, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
            if msg_type == NLMSG_ERROR:
                if seq == probe_seq:
                    return acks
                acks[seq] = -struct.unpack_from("=i", data, offset + NLMSG_HDRLEN)[0]
            offset += (max(length, NLMSG_HDRLEN) + 3) & ~3


def malformed(args):
    """Each malformed_cases send on a socket of --protocol, then a NLMSG_NOOP
    with NLM_F_ACK whose ack ends the reading: every ack the kernel gave the
    send comes before it. One JSON line per send: the case, its bytes' length
    and seq, how many messages it dispatches, the errno of the send itself
    (0 if it was taken) and the acks' errno by seq."""
    sock = open_socket(args.protocol)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 22)    # 100 replies and acks at once
    for i, (case, seq, data, dispatched) in enumerate(malformed_cases(args.protocol, args.seq)):
        try:
            sock.send(data)
            refused = 0
        except OSError as e:
            refused = e.errno
        probe = PROBE_SEQ + i
        sock.send(header(NLMSG_HDRLEN, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, probe))
        print(json.dumps({"pid": os.getpid(), "case": case, "len": len(data), "seq": seq,
                          "dispatched": dispatched, "send_errno": refused, "probe_seq": probe,
                          "acks": read_acks(sock, probe)}),
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1000)
    parser.add_argument("--flags", type=lambda s: int(s, 0), default=0, help="extra NLM_F_* bits")
    parser.add_argument("--comm", help="set this process's command name first")
    parser.add_argument("--wait", action="store_true", help="read a line from stdin before sending, "
                        "so a tracer can be started for this pid first")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("getlink", getlink), ("getstats", getstats), ("setlink-bridge", setlink_bridge)):
        p = sub.add_parser(name)
        p.add_argument("--index", type=int, required=True)
        p.set_defaults(fn=fn)
    p = sub.add_parser("mix")
    p.add_argument("--getlink", type=int, required=True)
    p.add_argument("--getfamily", type=int, required=True)
    p.set_defaults(fn=mix)
    p = sub.add_parser("batch")
    p.add_argument("--indexes", type=int, nargs="+", required=True)
    p.set_defaults(fn=batch)
    p = sub.add_parser("audit-get")
    p.set_defaults(fn=audit_get)
    p = sub.add_parser("bind")
    p.add_argument("--protocol", type=int, required=True)
    p.add_argument("--groups", type=lambda s: int(s, 0), required=True)
    p.set_defaults(fn=bind_groups)
    p = sub.add_parser("getfamily")
    p.add_argument("--name", required=True)
    p.set_defaults(fn=getfamily)
    p = sub.add_parser("listen")
    p.add_argument("--groups", type=lambda s: int(s, 0), required=True)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--no-read", action="store_true")
    p.set_defaults(fn=listen)
    p = sub.add_parser("malformed")
    p.add_argument("--protocol", type=int, required=True)
    p.set_defaults(fn=malformed)
    p = sub.add_parser("sockets")
    p.add_argument("--groups", type=lambda s: int(s, 0), default=0, help="nl_groups to bind to")
    p.set_defaults(fn=sockets)
    for name, fn in (("usersock-recv", usersock_recv), ("usersock-send", usersock_send)):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.set_defaults(fn=fn)
    args = parser.parse_args()
    if args.comm:
        with open("/proc/self/comm", "w") as f:
            f.write(args.comm)
    if args.wait:
        sys.stdin.readline()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
