"""Netlink message decoding, on pyroute2's message classes and constants.

The kernel programs capture the head of each message (NLT_MSG_CAPTURE bytes);
this turns it into names: protocol, message type, flags, and the fixed
fields and complete attributes that fit in the capture.
"""

import errno
import functools
import struct

import pyroute2.netlink as nl
from pyroute2.netlink import ctrlmsg, genlmsg
from pyroute2.netlink.rtnl import RTM_VALUES
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

NLMSG_HDRLEN = 16
GENL_HDRLEN = 4
RTM_BASE = 16


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
CTRL_COMMANDS = {getattr(nl, n): n for n in dir(nl) if n.startswith("CTRL_CMD_")}

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
RTM_KINDS = ("new", "del", "get", "set")

RTNL_CLASSES = MarshalRtnl.msg_map


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


def _kind(protocol_name_, msg_type):
    if msg_type == nl.NLMSG_ERROR:
        return "ack"
    if protocol_name_ == "NETLINK_ROUTE" and msg_type >= RTM_BASE:
        return RTM_KINDS[(msg_type - RTM_BASE) % 4]
    if protocol_name_ == "NETLINK_GENERIC":
        return "get"     # genl requests use the GET meaning of the high bits (dumps)
    return None


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


def decode_message(data, protocol, genl_family=None):
    """Decode a captured message head. data: the captured bytes (may be cut
    short of the message). Returns the JSON contract's "message" object, or
    None when fewer bytes than a netlink header were captured. The nested
    values (flags, fields, attrs) are shared between calls: read them only."""
    if len(data) < NLMSG_HDRLEN:
        return None
    seq, portid = struct.unpack_from("=II", data, 8)
    # A process's messages mostly repeat but for seq and portid: decoding
    # (pyroute2, the costliest step of a tree) is done once per distinct rest.
    decoded = _decode_without_seq(data[:8] + bytes(8) + data[16:], protocol, genl_family)
    return dict(decoded, seq=seq, portid=portid)


@functools.lru_cache(maxsize=4096)
def _decode_without_seq(data, protocol, genl_family):
    length, msg_type, flags, seq, portid = struct.unpack_from("=IHHII", data)
    proto = protocol_name(protocol)
    out = {"type": msg_type, "type_name": None, "flags": flag_names(flags, _kind(proto, msg_type)),
           "seq": seq, "portid": portid, "family": None, "cmd": None, "len": length}
    captured = min(len(data), length)
    cls = None
    if msg_type in CONTROL_TYPES:
        out["type_name"] = CONTROL_TYPES[msg_type]
        if msg_type == nl.NLMSG_ERROR and len(data) >= NLMSG_HDRLEN + 4:
            err = struct.unpack_from("=i", data, NLMSG_HDRLEN)[0]
            out["fields"] = {"error": err, "error_name": errno_name(err) if err else None}
    elif proto == "NETLINK_ROUTE":
        out["type_name"] = RTM_VALUES.get(msg_type)
        cls = RTNL_CLASSES.get(msg_type)
    elif proto == "NETLINK_GENERIC" and len(data) >= NLMSG_HDRLEN + GENL_HDRLEN:
        cmd = data[NLMSG_HDRLEN]
        family = genl_family or ("nlctrl" if msg_type == nl.GENL_ID_CTRL else None)
        out.update(family=family, cmd=cmd, type_name=family)
        if msg_type == nl.GENL_ID_CTRL:
            out["cmd_name"] = CTRL_COMMANDS.get(cmd)
            cls = ctrlmsg
        else:
            cls = genlmsg
    if cls is not None:
        fields, attrs = _decode_body(cls, data, captured)
        if fields:
            out["fields"] = fields
        if attrs:
            out["attrs"] = attrs
    out["truncated"] = length > len(data)
    return out
