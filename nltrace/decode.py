"""Netlink message decoding, on pyroute2's message classes and constants
and the kernel's uapi headers (nltrace/uapi.py).

The kernel programs capture the head of each message (NLT_MSG_CAPTURE bytes);
this turns it into names: protocol, message type (generic-netlink family and
command, nfnetlink subsystem and message), flags, and the fixed fields and
complete attributes that fit in the capture. A uevent (not a netlink
message but text) is shown as its first line, ACTION@DEVPATH.
"""

import errno
import functools
import re
import struct

import pyroute2.netlink as nl
from pyroute2.netlink import ctrlmsg, genlmsg
from pyroute2.netlink import rtnl
from pyroute2.netlink.rtnl import RTM_VALUES
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from nltrace import uapi

NLMSG_HDRLEN = 16
GENL_HDRLEN = 4


def _names(prefix, skip=()):
    out = {}
    for name in sorted(dir(nl)):
        if name.startswith(prefix) and name not in skip and isinstance(getattr(nl, name), int):
            out.setdefault(getattr(nl, name), name)
    return out


# NETLINK_UNUSED and NETLINK_FIREWALL share numbers with live protocols' old names.
PROTOCOLS = _names("NETLINK_", skip={
    "NETLINK_UNUSED", "NETLINK_FIREWALL", "NETLINK_IP6_FW", "NETLINK_NFLOG", "NETLINK_TX_RING",
    "NETLINK_RX_RING", "NETLINK_ADD_MEMBERSHIP", "NETLINK_DROP_MEMBERSHIP", "NETLINK_PKTINFO",
    "NETLINK_BROADCAST_ERROR", "NETLINK_NO_ENOBUFS", "NETLINK_LISTEN_ALL_NSID",
    "NETLINK_LIST_MEMBERSHIPS", "NETLINK_CAP_ACK", "NETLINK_EXT_ACK", "NETLINK_GET_STRICT_CHK"})
PROTOCOL_VALUES = {name: value for value, name in PROTOCOLS.items()}
CONTROL_TYPES = {nl.NLMSG_NOOP: "NLMSG_NOOP", nl.NLMSG_ERROR: "NLMSG_ERROR",
                 nl.NLMSG_DONE: "NLMSG_DONE", nl.NLMSG_OVERRUN: "NLMSG_OVERRUN"}

# Flags every message may carry, then the meaning of bits 8-11 by request kind
# (include/uapi/linux/netlink.h).
BASE_FLAGS = ((nl.NLM_F_REQUEST, "NLM_F_REQUEST"), (nl.NLM_F_MULTI, "NLM_F_MULTI"),
              (nl.NLM_F_ACK, "NLM_F_ACK"), (nl.NLM_F_ECHO, "NLM_F_ECHO"),
              (nl.NLM_F_DUMP_INTR, "NLM_F_DUMP_INTR"), (nl.NLM_F_DUMP_FILTERED, "NLM_F_DUMP_FILTERED"))
KIND_FLAGS = {
    "get": ((nl.NLM_F_DUMP, "NLM_F_DUMP"), (nl.NLM_F_ROOT, "NLM_F_ROOT"),
            (nl.NLM_F_MATCH, "NLM_F_MATCH"), (nl.NLM_F_ATOMIC, "NLM_F_ATOMIC")),
    "new": ((nl.NLM_F_REPLACE, "NLM_F_REPLACE"), (nl.NLM_F_EXCL, "NLM_F_EXCL"),
            (nl.NLM_F_CREATE, "NLM_F_CREATE"), (nl.NLM_F_APPEND, "NLM_F_APPEND")),
    "del": ((0x100, "NLM_F_NONREC"), (0x200, "NLM_F_BULK")),
    "ack": ((nl.NLM_F_CAPPED, "NLM_F_CAPPED"), (nl.NLM_F_ACK_TLVS, "NLM_F_ACK_TLVS")),
}
_KIND = re.compile(r"_(NEW|DEL|GET|SET)")

RTNL_CLASSES = MarshalRtnl.msg_map
AF_MCTP = 45


def _mctp(cls, addresses):
    """cls with its address attributes read as MCTP endpoint ids (one byte;
    pyroute2 reads them as IP addresses only)."""
    nla_map = tuple((name, "uint8" if name in addresses else kind) for name, kind in cls.nla_map)
    # pyroute2 compiles nla_map once per class into class attributes, which a
    # subclass would inherit from its compiled parent: it gets its own flag.
    return type(f"mctp_{cls.__name__}", (cls,), {"nla_map": nla_map, "_nlmsg_base__compiled_nla": False})


# Address and route messages of family AF_MCTP (include/uapi/linux/mctp.h, net/mctp):
# an address is the endpoint id (EID) of the interface, a route's RTA_DST the remote EID.
MCTP_CLASSES = {t: _mctp(ifaddrmsg, {"IFA_ADDRESS", "IFA_LOCAL"}) for t in
                (rtnl.RTM_NEWADDR, rtnl.RTM_DELADDR, rtnl.RTM_GETADDR)}
MCTP_CLASSES.update({t: _mctp(rtmsg, {"RTA_DST", "RTA_GATEWAY"}) for t in
                     (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE, rtnl.RTM_GETROUTE)})


def protocol_name(protocol):
    if protocol == 0xffff:
        return None
    return PROTOCOLS.get(protocol, f"NETLINK_{protocol}")


def errno_name(err):
    """-19 or 19 -> 'ENODEV'."""
    return errno.errorcode.get(abs(err), f"E{abs(err)}")


def flag_names(flags, kind):
    names, rest = [], flags
    for table in (BASE_FLAGS, KIND_FLAGS.get(kind, ())):
        for bit, name in table:
            if flags & bit == bit and rest & bit:
                names.append(name)
                rest &= ~bit
    if rest:
        names.append(hex(rest))
    return names


def _kind(protocol_name_, msg_type, type_name):
    """Which meaning bits 8-11 of the flags have: the kind in the type's name
    (RTM_NEWLINK, NFT_MSG_DELTABLE, XFRM_MSG_GETSA, ...)."""
    if msg_type == nl.NLMSG_ERROR:
        return "ack"
    if protocol_name_ == "NETLINK_GENERIC":
        return "get"     # genl requests use the GET meaning of the high bits (dumps)
    kind = _KIND.search(type_name or "")
    return kind.group(1).lower() if kind else None


def type_names(protocol, msg_type, family=None, cmd=None, to_kernel=True):
    """The names of a message type: {"type_name", and as they apply
    "cmd_name" (generic netlink) or "subsys" (nfnetlink)}; None where
    unknown. family: the generic-netlink family's name; to_kernel: a
    request, not a reply (some families name each direction's commands)."""
    proto = protocol_name(protocol)
    if msg_type in CONTROL_TYPES:
        return {"type_name": CONTROL_TYPES[msg_type]}
    if proto == "NETLINK_ROUTE":
        return {"type_name": RTM_VALUES.get(msg_type)}
    if proto == "NETLINK_GENERIC":
        family = family or ("nlctrl" if msg_type == nl.GENL_ID_CTRL else None)
        return {"type_name": family,
                "cmd_name": uapi.genl_commands(family, to_kernel).get(cmd) if family else None}
    if proto == "NETLINK_NETFILTER":
        if msg_type in uapi.nfnl_batch_types():
            return {"type_name": uapi.nfnl_batch_types()[msg_type], "subsys": None}
        subsys = uapi.nfnl_subsystems().get(msg_type >> 8)
        return {"type_name": uapi.nfnl_messages(subsys).get(msg_type & 0xff), "subsys": subsys}
    if proto == "NETLINK_SOCK_DIAG":
        return {"type_name": uapi.sock_diag_types().get(msg_type)}
    if proto == "NETLINK_XFRM":
        return {"type_name": uapi.xfrm_types().get(msg_type)}
    if proto == "NETLINK_AUDIT":
        return {"type_name": uapi.audit_types().get(msg_type)}
    return {"type_name": None}


def _plain(value):
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _decode_body(cls, data, captured):
    """Fixed fields and the attributes that fit in the capture, via pyroute2."""
    fixed = NLMSG_HDRLEN + struct.calcsize("=" + "".join(f[1] for f in cls.fields))
    for length in (captured, fixed):
        if length > len(data) or length < fixed:
            continue
        buf = bytearray(data[:length])
        struct.pack_into("=I", buf, 0, length)
        msg = cls(bytes(buf))
        try:
            msg.decode()
        except Exception:   # pyroute2 raises several types for a cut attribute
            continue
        fields = {name: _plain(msg[name]) for name, _ in cls.fields if not name.startswith("__")}
        attrs = {}
        for name, value in msg.get("attrs", []):
            attrs.setdefault(name, _plain(value))
        return fields, attrs
    return {}, {}


def decode_message(data, protocol, genl_family=None, length=None):
    """Decode a captured message head. data: the captured bytes (may be cut
    short of the message); length: how long the skb was in full
    (records.Capture.length), if known. Returns the JSON contract's
    "message" object, or None for an empty send, or when fewer bytes than a
    netlink header were captured of a longer one. "truncated": the capture
    cut a message the skb held whole; "malformed" (only then present): why
    the kernel took it for no message: fewer bytes sent than a header, an
    nlmsg_len below the header or past the bytes sent. The nested values
    (flags, fields, attrs) are shared between calls: read them only."""
    if protocol == nl.NETLINK_KOBJECT_UEVENT:
        return _uevent(data) if data else None
    if len(data) < NLMSG_HDRLEN:
        if data and length == len(data):
            return _headless(length)
        return None
    seq, portid = struct.unpack_from("=II", data, 8)
    # A process's messages mostly repeat but for seq and portid: decoding
    # (pyroute2, the costliest step of a tree) is done once per distinct rest.
    decoded = _decode_without_seq(data[:8] + bytes(8) + data[16:], protocol, genl_family)
    malformed = _malformed(decoded["len"], 0, length, len(data))
    out = dict(decoded, seq=seq, portid=portid, truncated=not malformed and decoded["len"] > len(data))
    if malformed:
        out["malformed"] = malformed
    return out


def _headless(length):
    """A send of fewer bytes than a netlink header, which the kernel skips."""
    return {"type": None, "type_name": None, "flags": [], "seq": None, "portid": None, "family": None,
            "cmd": None, "len": None, "truncated": False,
            "malformed": f"{length} bytes sent, fewer than the {NLMSG_HDRLEN}-byte header"}


def _malformed(nlmsg_len, offset, length, captured):
    """Why netlink_rcv_skb takes the message at offset of a buffer for none
    (its nlmsg_len below a header, or past the skb's length bytes: no
    dispatch, no ack), or None. length None: not known (the captured bytes
    are all there is to go by)."""
    if nlmsg_len < NLMSG_HDRLEN:
        return f"nlmsg_len {nlmsg_len} below the {NLMSG_HDRLEN}-byte header"
    if length is None:
        return None
    sent = max(length, captured)
    if nlmsg_len > sent - offset:
        left = f"the {sent - offset} bytes left of " if offset else ""
        return f"nlmsg_len {nlmsg_len} beyond {left}the {sent} bytes sent"
    return None


def message_head(protocol, head, family=None, cmd=None):
    """The header of one message of a buffer, as a dispatch or an ack node
    read it: head is bytes 4-11 of its nlmsghdr (type, flags, seq); cmd its
    genl command, where the node read one."""
    msg_type, flags, seq = head & 0xffff, head >> 16 & 0xffff, head >> 32
    names = type_names(protocol, msg_type, family, cmd)
    out = {"type": msg_type, "type_name": names["type_name"],
           "flags": flag_names(flags, _kind(protocol_name(protocol), msg_type, names["type_name"])), "seq": seq}
    if cmd is not None:
        out.update(cmd=cmd, cmd_name=names.get("cmd_name"))
    return out


def buffer_heads(data, protocol, family=None, length=None):
    """The header of each message in a captured buffer, in order, as
    message_head gives it (the last one's body may lie past the capture).
    family: the generic-netlink family of the buffer's first message type;
    length: the skb's full length, if known. A message the kernel takes for
    none has "malformed" (as decode_message says it), and is the last; but
    for a zero nlmsg_len after the first message: padding (iproute2 sends
    its requests' unused space), where netlink_rcv_skb stops as quietly."""
    out, offset = [], 0
    checked = protocol != nl.NETLINK_KOBJECT_UEVENT     # a uevent is text: no nlmsghdr to refuse
    while offset + NLMSG_HDRLEN <= len(data):
        nlmsg_len, msg_type, flags, seq = struct.unpack_from("=IHHI", data, offset)
        cmd = None
        if protocol == nl.NETLINK_GENERIC and msg_type >= nl.NLMSG_MIN_TYPE and offset + NLMSG_HDRLEN < len(data):
            cmd = data[offset + NLMSG_HDRLEN]
        same_family = not out or msg_type == out[0]["type"]
        out.append(message_head(protocol, msg_type | flags << 16 | seq << 32, family if same_family else None, cmd))
        malformed = _malformed(nlmsg_len, offset, length, len(data))
        if malformed:
            if checked and (nlmsg_len or not offset):
                out[-1]["malformed"] = malformed
            break       # netlink_rcv_skb stops there too
        offset += (nlmsg_len + 3) & ~3     # NLMSG_ALIGN
    return out


def _uevent(data):
    """A kobject uevent: "ACTION@DEVPATH\0KEY=VALUE\0...", or udev's
    rebroadcast, which starts "libudev\0" and a binary header."""
    first = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    return {"type": None, "type_name": "uevent", "flags": [], "seq": None, "portid": None,
            "family": None, "cmd": None, "len": None, "uevent": first, "truncated": False}


@functools.lru_cache(maxsize=4096)
def _decode_without_seq(data, protocol, genl_family):
    length, msg_type, flags, seq, portid = struct.unpack_from("=IHHII", data)
    proto = protocol_name(protocol)
    out = {"type": msg_type, "type_name": None, "flags": [],
           "seq": seq, "portid": portid, "family": None, "cmd": None, "len": length}
    captured = min(len(data), length)
    cls = None
    if msg_type in CONTROL_TYPES:
        out["type_name"] = CONTROL_TYPES[msg_type]
        if msg_type == nl.NLMSG_ERROR and len(data) >= NLMSG_HDRLEN + 4:
            err = struct.unpack_from("=i", data, NLMSG_HDRLEN)[0]
            out["fields"] = {"error": err, "error_name": errno_name(err) if err else None}
    elif proto == "NETLINK_GENERIC" and len(data) >= NLMSG_HDRLEN + GENL_HDRLEN:
        cmd = data[NLMSG_HDRLEN]
        names = type_names(protocol, msg_type, genl_family, cmd, to_kernel=bool(flags & nl.NLM_F_REQUEST))
        out.update(family=names["type_name"], cmd=cmd, **names)
        cls = ctrlmsg if msg_type == nl.GENL_ID_CTRL else genlmsg
    elif proto != "NETLINK_GENERIC":
        out.update(type_names(protocol, msg_type))
        if proto == "NETLINK_ROUTE":
            mctp = len(data) > NLMSG_HDRLEN and data[NLMSG_HDRLEN] == AF_MCTP   # the family byte
            cls = (MCTP_CLASSES if mctp and msg_type in MCTP_CLASSES else RTNL_CLASSES).get(msg_type)
    out["flags"] = flag_names(flags, _kind(proto, msg_type, out["type_name"]))
    if cls is not None:
        fields, attrs = _decode_body(cls, data, captured)
        if fields:
            out["fields"] = fields
        if attrs:
            out["attrs"] = attrs
    return out
