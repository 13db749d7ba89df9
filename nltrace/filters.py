"""What the user asked to see: the tree filters applied in user space, and
--type/--protocol resolved to the numbers the kernel programs compare."""

from dataclasses import dataclass

from nltrace.errors import BadFilter


@dataclass
class Filters:
    pid: int = None
    comm: str = None
    protocol: str = None
    msg_type: str = None
    errors_only: bool = False
    no_recv: bool = False

    def match(self, tree):
        if self.no_recv and tree["root"]["func"] == "netlink_recvmsg":
            return False
        if self.pid is not None and tree["pid"] != self.pid:
            return False
        if self.comm is not None and tree["comm"] != self.comm:
            return False
        if self.protocol is not None and (tree["protocol"] or "").upper() not in (
                self.protocol.upper(), "NETLINK_" + self.protocol.upper()):
            return False
        if self.errors_only and not tree["error"]:
            return False
        if self.msg_type is not None:
            msg = tree["message"] or {}
            names = {str(msg.get("type")), str(msg.get("type_name")).upper()}
            if msg.get("family"):
                names |= {msg["family"].upper(), f"{msg['family']}/{msg.get('cmd_name') or msg['cmd']}".upper(),
                          f"{msg['family']}/{msg['cmd']}".upper()}
            if self.msg_type.upper() not in names:
                return False
        return True


def resolve_type(msg_type, protocol):
    """--type and --protocol as the kernel compares them: {"protocol", "type", "cmd"}.
    Raises BadFilter for a name this kernel does not know."""
    from pyroute2.netlink.rtnl import RTM_NAMES

    from nltrace.decode import PROTOCOL_VALUES
    from nltrace.uapi import genl_commands, nfnl_type
    want = {"protocol": None, "type": None, "cmd": None}
    if protocol:
        name = protocol.upper() if protocol.upper().startswith("NETLINK_") else "NETLINK_" + protocol.upper()
        if name not in PROTOCOL_VALUES:
            raise BadFilter(f"unknown protocol {protocol!r}")
        want["protocol"] = PROTOCOL_VALUES[name]
    if not msg_type:
        return want
    if msg_type.isdigit():
        want["type"] = int(msg_type)
    elif msg_type.upper() in RTM_NAMES:
        want.update(protocol=0, type=RTM_NAMES[msg_type.upper()])
    elif nfnl_type(msg_type.upper()) is not None:
        want.update(protocol=12, type=nfnl_type(msg_type.upper()))
    else:
        family, _, cmd = msg_type.partition("/")
        want.update(protocol=16, type=genl_family_id(family))
        if cmd:
            commands = {n: v for v, n in genl_commands(family).items()}
            if not cmd.isdigit() and cmd.upper() not in commands:
                raise BadFilter(f"unknown command {cmd!r} of {family}: give its number")
            want["cmd"] = int(cmd) if cmd.isdigit() else commands[cmd.upper()]
    return want


def genl_family_id(name):
    """The id the running kernel gave a generic netlink family."""
    from pyroute2.netlink import NetlinkError, genlmsg
    from pyroute2.netlink.generic import GenericNetlinkSocket
    sock = GenericNetlinkSocket()
    try:
        sock.bind(name, genlmsg)   # resolves the family through CTRL_CMD_GETFAMILY
        return sock.prid
    except (NetlinkError, OSError):
        raise BadFilter(f"no generic netlink family {name!r} on this kernel") from None
    finally:
        sock.close()
