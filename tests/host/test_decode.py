"""Message decoding, on messages built with pyroute2 and on raw bytes."""

import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, ctrlmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nltrace import uapi
from nltrace.decode import AF_MCTP, buffer_heads, decode_message, errno_name, flag_names, protocol_name


def encoded(msg, msg_type, flags, seq):
    msg["header"]["type"], msg["header"]["flags"], msg["header"]["sequence_number"] = msg_type, flags, seq
    msg.encode()
    return bytes(msg.data)


def test_rtm_getlink_with_attributes():
    msg = ifinfmsg()
    msg["index"] = 987654
    msg["attrs"] = [("IFLA_IFNAME", "lo")]
    out = decode_message(encoded(msg, 18, NLM_F_REQUEST | NLM_F_ACK, 77), protocol=0)
    assert (out["type"], out["type_name"], out["seq"]) == (18, "RTM_GETLINK", 77)
    assert out["flags"] == ["NLM_F_REQUEST", "NLM_F_ACK"]
    assert out["fields"]["index"] == 987654
    assert out["attrs"] == {"IFLA_IFNAME": "lo"}
    assert out["truncated"] is False


def test_capture_cut_inside_an_attribute_keeps_the_fixed_fields():
    msg = ifinfmsg()
    msg["index"] = 5
    msg["attrs"] = [("IFLA_IFNAME", "a-rather-long-name"), ("IFLA_MTU", 1500)]
    data = encoded(msg, 16, NLM_F_REQUEST, 1)
    out = decode_message(data[:40], protocol=0)
    assert out["fields"]["index"] == 5
    assert out["truncated"] is True
    assert out["len"] == len(data)


def test_genl_ctrl_getfamily():
    msg = ctrlmsg()
    msg["cmd"], msg["version"] = 3, 1
    msg["attrs"] = [("CTRL_ATTR_FAMILY_NAME", "nlctrl")]
    out = decode_message(encoded(msg, 16, NLM_F_REQUEST | NLM_F_DUMP, 9), protocol=16)
    assert (out["family"], out["cmd"], out["cmd_name"]) == ("nlctrl", 3, "CTRL_CMD_GETFAMILY")
    assert out["flags"] == ["NLM_F_REQUEST", "NLM_F_DUMP"]
    assert out["attrs"]["CTRL_ATTR_FAMILY_NAME"] == "nlctrl"


def test_genl_family_name_comes_from_the_kernel_for_dynamic_ids():
    data = struct.pack("=IHHII", 20, 0x1d, NLM_F_REQUEST, 1, 0) + bytes([1, 1, 0, 0])
    out = decode_message(data, protocol=16, genl_family="devlink")
    assert (out["type_name"], out["family"], out["cmd"]) == ("devlink", "devlink", 1)


def test_nlmsg_error_carries_its_errno():
    data = struct.pack("=IHHII", 36, 2, 0x100, 5, 42) + struct.pack("=i", -19) + bytes(16)
    out = decode_message(data, protocol=0)
    assert out["type_name"] == "NLMSG_ERROR"
    assert out["flags"] == ["NLM_F_CAPPED"]
    assert out["fields"] == {"error": -19, "error_name": "ENODEV"}


def test_short_or_garbage_input():
    assert decode_message(b"\x01\x02", protocol=0) is None
    out = decode_message(b"\xff" * 16, protocol=0)     # nonsense header: decoded, never raises
    assert out["type"] == 0xffff and out["type_name"] is None
    out = decode_message(struct.pack("=IHHII", 2000, 18, 1, 1, 0) + b"\xff" * 40, protocol=0)
    assert out["type_name"] == "RTM_GETLINK" and out["truncated"] is True


def test_names():
    assert protocol_name(0) == "NETLINK_ROUTE"
    assert protocol_name(2) == "NETLINK_USERSOCK"
    assert protocol_name(16) == "NETLINK_GENERIC"
    assert protocol_name(0xffff) is None
    assert errno_name(-19) == "ENODEV" and errno_name(2) == "ENOENT"
    # the same bits mean different things for a request to create and to delete
    assert flag_names(0x100 | 1, "new") == ["NLM_F_REQUEST", "NLM_F_REPLACE"]
    assert flag_names(0x100 | 1, "del") == ["NLM_F_REQUEST", "NLM_F_NONREC"]
    assert flag_names(0x8000, None) == ["0x8000"]


def genl(msg_type, flags, cmd):
    return struct.pack("=IHHII", 20, msg_type, flags, 1, 0) + bytes([cmd, 1, 0, 0])


def test_genl_commands_by_name_from_the_uapi_headers():
    # ethtool names each direction's commands in its own enum
    request = decode_message(genl(0x14, NLM_F_REQUEST, 2), protocol=16, genl_family="ethtool")
    reply = decode_message(genl(0x14, 0, 2), protocol=16, genl_family="ethtool")
    assert request["cmd_name"] == "ETHTOOL_MSG_LINKINFO_GET"
    assert reply["cmd_name"] == "ETHTOOL_MSG_LINKINFO_GET_REPLY"
    assert decode_message(genl(0x15, NLM_F_REQUEST, 1), 16, "devlink")["cmd_name"] == "DEVLINK_CMD_GET"
    assert decode_message(genl(0x16, NLM_F_REQUEST, 1), 16, "NCSI")["cmd_name"] == "NCSI_CMD_PKG_INFO"
    # a family nltrace has no table for keeps its number
    out = decode_message(genl(0x17, NLM_F_REQUEST, 3), 16, "no_such_family")
    assert (out["family"], out["cmd"], out["cmd_name"]) == ("no_such_family", 3, None)


def test_nfnetlink_batch_and_nftables_messages():
    nfgen = bytes([2, 0, 0, 0])
    begin = decode_message(struct.pack("=IHHII", 20, 0x10, NLM_F_REQUEST, 7, 0) + nfgen, protocol=12)
    assert (begin["type_name"], begin["subsys"]) == ("NFNL_MSG_BATCH_BEGIN", None)
    new_table = decode_message(struct.pack("=IHHII", 20, 10 << 8 | 0, NLM_F_REQUEST | 0x400 | 4, 8, 0) + nfgen,
                               protocol=12)
    assert (new_table["type_name"], new_table["subsys"]) == ("NFT_MSG_NEWTABLE", "NFTABLES")
    # bits 8-11 mean what they mean for a NEW request
    assert new_table["flags"] == ["NLM_F_REQUEST", "NLM_F_ACK", "NLM_F_CREATE"]
    unknown = decode_message(struct.pack("=IHHII", 16, 99 << 8 | 1, 0, 0, 0), protocol=12)
    assert (unknown["type_name"], unknown["subsys"]) == (None, None)


def test_sock_diag_and_xfrm_types():
    assert decode_message(struct.pack("=IHHII", 16, 20, 0x301, 1, 0), 4)["type_name"] == "SOCK_DIAG_BY_FAMILY"
    assert decode_message(struct.pack("=IHHII", 16, 16, 1, 1, 0), 6)["type_name"] == "XFRM_MSG_NEWSA"


def test_audit_types_from_the_uapi_header():
    """NETLINK_AUDIT (9): requests and the kernel's records by name; the
    header's range markers and its non-message macros are not types."""
    assert decode_message(struct.pack("=IHHII", 16, 1000, 1, 1, 0), 9)["type_name"] == "AUDIT_GET"
    assert decode_message(struct.pack("=IHHII", 16, 1300, 0, 0, 0), 9)["type_name"] == "AUDIT_SYSCALL"
    assert "AUDIT_FIRST_USER_MSG" not in uapi.audit_types().values()
    assert all(1000 <= t < 3000 for t in uapi.audit_types())


def test_uevent_shows_its_first_line():
    out = decode_message(b"add@/devices/virtual/net/dummy0\0ACTION=add\0DEVPATH=/devices/virt", protocol=15)
    assert (out["type_name"], out["uevent"]) == ("uevent", "add@/devices/virtual/net/dummy0")
    assert decode_message(b"libudev\0\xfe\xed\xca\xfe", protocol=15)["uevent"] == "libudev"


def test_mctp_addresses_and_routes_are_endpoint_ids():
    """AF_MCTP messages as tests/clients/bmcnl.c sends them: the address and
    the route's destination are one-byte endpoint ids, not IP addresses,
    also after an AF_INET message of the same type was decoded."""
    ifa = struct.pack("=BBBBI", 2, 24, 0, 0, 1) + struct.pack("=HH4B", 8, 2, 10, 9, 8, 7)
    assert decode_message(struct.pack("=IHHII", 16 + len(ifa), 20, 0x605, 1, 0) + ifa, 0)["attrs"] == \
        {"IFA_LOCAL": "10.9.8.7"}
    ifa = struct.pack("=BBBBI", AF_MCTP, 0, 0, 0, 1) + struct.pack("=HHB3x", 5, 2, 8)       # IFA_LOCAL 8
    msg = decode_message(struct.pack("=IHHII", 16 + len(ifa), 20, 0x605, 2, 0) + ifa, 0)
    assert msg["type_name"] == "RTM_NEWADDR" and msg["fields"]["family"] == AF_MCTP
    assert msg["attrs"] == {"IFA_LOCAL": 8}
    rtm = (struct.pack("=BBBBBBBBI", AF_MCTP, 0, 0, 0, 253, 4, 253, 1, 0)
           + struct.pack("=HHB3x", 5, 1, 9) + struct.pack("=HHI", 8, 4, 1))                  # RTA_DST 9, RTA_OIF 1
    msg = decode_message(struct.pack("=IHHII", 16 + len(rtm), 24, 0x605, 3, 0) + rtm, 0)
    assert msg["attrs"] == {"RTA_DST": 9, "RTA_OIF": 1}
    # the same types of another family stay IP addresses
    ifa = struct.pack("=BBBBI", 2, 24, 0, 0, 1) + struct.pack("=HH4B", 8, 2, 10, 9, 8, 7)
    assert decode_message(struct.pack("=IHHII", 16 + len(ifa), 20, 0x605, 2, 0) + ifa, 0)["attrs"] == \
        {"IFA_LOCAL": "10.9.8.7"}


def getlink(nlmsg_len, size=32):
    """An RTM_GETLINK request of size bytes (an ifinfomsg and IFLA_IFNAME "lo") whose nlmsg_len says nlmsg_len."""
    data = struct.pack("=IHHII", nlmsg_len, 18, NLM_F_REQUEST | NLM_F_ACK, 5, 0) + struct.pack("=BxHiII", 0, 0, 1, 0, 0)
    data += struct.pack("=HH", 7, 3) + b"lo\0\0"
    return (data + bytes(size))[:size]


def test_nlmsg_len_beyond_the_send_is_malformed_not_truncated():
    """A 32-byte send whose nlmsg_len says 200: netlink_rcv_skb drops it (no
    dispatch, no ack); the capture cut nothing."""
    out = decode_message(getlink(200), 0, length=32)
    assert out["malformed"] == "nlmsg_len 200 beyond the 32 bytes sent"
    assert out["truncated"] is False
    assert (out["type_name"], out["len"], out["fields"]["index"]) == ("RTM_GETLINK", 200, 1)
    (head,) = buffer_heads(getlink(200), 0, length=32)
    assert head["malformed"] == "nlmsg_len 200 beyond the 32 bytes sent"


def test_nlmsg_len_below_a_header_is_malformed():
    for nlmsg_len in (8, 15):
        out = decode_message(getlink(nlmsg_len), 0, length=32)
        assert out["malformed"] == f"nlmsg_len {nlmsg_len} below the 16-byte header"
        assert out["truncated"] is False
    assert buffer_heads(getlink(8), 0, length=32)[0]["malformed"] == "nlmsg_len 8 below the 16-byte header"


def test_zero_length():
    out = decode_message(getlink(0), 0, length=32)
    assert out["malformed"] == "nlmsg_len 0 below the 16-byte header" and out["truncated"] is False
    assert decode_message(getlink(0), 0) == out          # whatever the skb's length
    assert decode_message(b"", 0, length=0) is None     # an empty send: no message at all


def test_a_send_shorter_than_a_header_is_malformed():
    out = decode_message(b"\x01" * 10, 0, length=10)
    assert out["malformed"] == "10 bytes sent, fewer than the 16-byte header" and out["type"] is None
    assert decode_message(b"\x01" * 10, 0) is None       # the skb's length unknown: nothing to go by


def test_a_whole_message_cut_by_the_capture_is_truncated_not_malformed():
    """A 400-byte message the kernel had whole, of which the capture kept 256 bytes."""
    data = getlink(400, size=400)
    out = decode_message(data[:256], 0, length=400)
    assert out["truncated"] is True and "malformed" not in out
    assert (out["len"], out["attrs"]["IFLA_IFNAME"]) == (400, "lo")
    assert "malformed" not in buffer_heads(data[:256], 0, length=400)[0]


def test_a_well_formed_message_reads_the_same_with_its_length():
    data = getlink(32)
    assert decode_message(data, 0, length=32) == decode_message(data, 0)
    assert "malformed" not in decode_message(data, 0, length=32)


def test_a_batch_whose_last_message_runs_past_the_send():
    """Only the message that runs past the skb is dropped; the zeros iproute2
    pads its requests with end the buffer as quietly as the kernel stops."""
    first = getlink(32)
    heads = buffer_heads(first + getlink(64), 0, length=64)
    assert "malformed" not in heads[0]
    assert heads[1]["malformed"] == "nlmsg_len 64 beyond the 32 bytes left of the 64 bytes sent"
    padded = buffer_heads(first + bytes(128), 0, length=160)
    assert len(padded) == 2 and "malformed" not in padded[1]
