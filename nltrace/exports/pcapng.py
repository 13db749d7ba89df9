"""pcapng for Wireshark: each traced message as the packet an nlmon capture holds, facts in its comment.

The link type is LINKTYPE_NETLINK: a 16-byte big-endian pseudo-header
(packet type, ARPHRD_NETLINK, address length 0, 8 address bytes, netlink
protocol) before the message bytes, as Linux's nlmon device writes them.
The blocks are python-pcapng's.
"""

import struct

from pcapng import FileWriter, blocks
from pcapng.structs import EPBFlags
from pyroute2.netlink import CTRL_CMD_NEWFAMILY, GENL_ID_CTRL
from pyroute2.netlink.generic import ctrlmsg

from nltrace.decode import PROTOCOL_VALUES

LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824       # Wireshark's netlink dissector gives up on any other
PACKET_USER, PACKET_KERNEL = 6, 7     # what nlmon writes: to a user socket, to the kernel
PSEUDO_HEADER = struct.Struct(">HHH8xH")
PCAPNG_TS_MAX = (1 << 64) - 1    # an enhanced packet block's timestamp: 64 bits, in if_tsresol units (ns)
PCAPNG_LEN_MAX = (1 << 32) - 1   # its original packet length: 32 bits
NETLINK_GENERIC = PROTOCOL_VALUES["NETLINK_GENERIC"]
# A uevent is text with no nlmsghdr: Wireshark would mark each one malformed.
NOT_MESSAGES = {PROTOCOL_VALUES["NETLINK_KOBJECT_UEVENT"]: "uevents"}
# Trees whose root carries a message to the kernel; other roots (a read, a
# broadcast, the kernel's own unicast) carry one to a user socket.
TO_KERNEL = {"netlink_sendmsg"}


def packet(capture, to_kernel):
    """The pseudo-header and captured bytes, and the length the packet had in full."""
    head = PSEUDO_HEADER.pack(PACKET_KERNEL if to_kernel else PACKET_USER, ARPHRD_NETLINK, 0, capture.protocol)
    return head + capture.data, min(PSEUDO_HEADER.size + max(capture.length, len(capture.data)), PCAPNG_LEN_MAX)


def new_family(family_id, name):
    """A CTRL_CMD_NEWFAMILY as the kernel sends it: Wireshark learns generic
    netlink family ids from these, and only from those earlier in the file."""
    msg = ctrlmsg()
    msg["cmd"] = CTRL_CMD_NEWFAMILY
    msg["version"] = 2
    msg["attrs"] = [("CTRL_ATTR_FAMILY_ID", family_id), ("CTRL_ATTR_FAMILY_NAME", name)]
    msg["header"]["type"] = GENL_ID_CTRL
    msg.encode()
    return bytes(msg.data)


def comment(tree):
    """The tree's facts as key=value words, for Wireshark's frame.comment filters."""
    words = [f"pid={tree['pid']}", f"tid={tree['tid']}", f"comm={tree['comm']}"]
    if tree["handler"]:
        words.append(f"handler={tree['handler']}")
    if tree["error"]:
        words.append(f"errno={tree['error']['name']}")
    root = tree["root"]
    if root is not None:
        words.append(f"func={root['func']}")
        if root["duration_ns"] is not None:
            words.append(f"duration_ns={root['duration_ns']}")
    words.append(f"tree={tree['id']}")
    text = " ".join(words)
    if tree["error"] and tree["error"]["extack"]:
        text += f"\nextack: {tree['error']['extack']}"
    return text


class PcapngWriter:
    """Writes one packet per tree that carries a netlink message; socket trees
    carry none, and uevents are no netlink messages (left_out counts them)."""

    def __init__(self, out, realtime_offset_ns):
        clock = ("CLOCK_MONOTONIC shifted to the epoch" if realtime_offset_ns is not None else
                 "CLOCK_MONOTONIC since boot (the stream has no wall-clock reference)")
        self.shb = blocks.SectionHeader(options={"shb_userappl": "nltrace"})
        self.shb.new_member(blocks.InterfaceDescription, link_type=LINKTYPE_NETLINK, snaplen=0xffff,
                            options={"if_name": "nltrace", "if_description": f"timestamps: {clock}",
                                     "if_tsresol": b"\x09"})   # ns
        self.writer = FileWriter(out, self.shb)
        self.offset_ns = realtime_offset_ns or 0
        self.families = {}          # genl family id -> name, as announced in the file
        self.messages = self.announcements = 0
        self.left_out = {}          # why -> how many trees

    def _write(self, ts_ns, data, length, inbound, text):
        ts = min(max(ts_ns + self.offset_ns, 0), PCAPNG_TS_MAX)    # a corrupt record's time, kept in range
        flags = EPBFlags()
        flags.inout = "inbound" if inbound else "outbound"
        self.writer.write_block(self.shb.new_member(
            blocks.EnhancedPacket, interface_id=0, timestamp_high=ts >> 32, timestamp_low=ts & 0xffffffff,
            packet_data=data, packet_len=length, options={"epb_flags": int(flags), "opt_comment": text}))

    def _announce(self, tree, capture):
        family, family_id = self._genl_family(tree, capture)
        if family and self.families.get(family_id) != family:
            self.families[family_id] = family
            data = new_family(family_id, family)
            head, length = packet(capture._replace(data=data, length=len(data), protocol=NETLINK_GENERIC), False)
            self._write(tree["ts_ns"], head, length, True,
                        f"nltrace: the family table when traced ({family} is {family_id}), not a traced message")
            self.announcements += 1

    @staticmethod
    def _genl_family(tree, capture):
        msg = tree["message"]
        if capture.protocol != NETLINK_GENERIC or not msg or not msg.get("family") or len(capture.data) < 6:
            return None, None
        return msg["family"], struct.unpack_from("=H", capture.data, 4)[0]

    def add(self, tree, capture):
        why = "socket trees" if not capture.data else NOT_MESSAGES.get(capture.protocol)
        if why:
            self.left_out[why] = self.left_out.get(why, 0) + 1
            return
        self._announce(tree, capture)
        to_kernel = tree["root"] is not None and tree["root"]["func"] in TO_KERNEL
        data, length = packet(capture, to_kernel)
        self._write(tree["ts_ns"], data, length, not to_kernel, comment(tree))
        self.messages += 1

    def close(self):
        pass   # every block is whole once written

    def summary(self):
        text = f"{self.messages} messages, {self.announcements} genl family announcements"
        if self.left_out:
            text += "; left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.left_out.items()))
        return text
