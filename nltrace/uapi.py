"""Names from the kernel's own uapi headers: generic-netlink commands per
family, nfnetlink subsystems and messages, sock_diag, xfrm and audit types.

The headers are those of the machine's linux-libc-dev (/usr/include/linux).
The preprocessor expands them; cffi (a pycparser front end) evaluates each
enum's values, previous enumerators and arithmetic included; integer macros
come from `cpp -dM`. Nothing here types a command name by hand: the tables
below only say where a family's commands live.
"""

import functools
import re
import shutil
import subprocess

import cffi

# family name as the kernel registers it -> (header, prefix of its commands);
# a family with an enum per direction (ethtool) adds a member of each: the
# requests' enum, then the replies'.
GENL_COMMANDS = {
    "nlctrl": ("linux/genetlink.h", "CTRL_CMD_"),
    "ethtool": ("linux/ethtool_netlink.h", "ETHTOOL_MSG_", "ETHTOOL_MSG_USER_NONE", "ETHTOOL_MSG_KERNEL_NONE"),
    "devlink": ("linux/devlink.h", "DEVLINK_CMD_"),
    "nl80211": ("linux/nl80211.h", "NL80211_CMD_"),
    "NCSI": ("linux/ncsi.h", "NCSI_CMD_"),
    "mptcp_pm": ("linux/mptcp.h", "MPTCP_PM_CMD_"),
    "wireguard": ("linux/wireguard.h", "WG_CMD_"),
    "TASKSTATS": ("linux/taskstats.h", "TASKSTATS_CMD_"),
    "thermal": ("linux/thermal.h", "THERMAL_GENL_CMD_"),
    "tcp_metrics": ("linux/tcp_metrics.h", "TCP_METRICS_CMD_"),
    "NET_DM": ("linux/net_dropmon.h", "NET_DM_CMD_"),
    "team": ("linux/if_team.h", "TEAM_CMD_"),
    "ovs_datapath": ("linux/openvswitch.h", "OVS_DP_CMD_"),
    "ovs_vport": ("linux/openvswitch.h", "OVS_VPORT_CMD_"),
    "ovs_flow": ("linux/openvswitch.h", "OVS_FLOW_CMD_"),
    "ovs_packet": ("linux/openvswitch.h", "OVS_PACKET_CMD_"),
    "ovs_meter": ("linux/openvswitch.h", "OVS_METER_CMD_"),
    "ovs_ct_limit": ("linux/openvswitch.h", "OVS_CT_LIMIT_CMD_"),
    "netdev": ("linux/netdev.h", "NETDEV_CMD_"),
    "l2tp": ("linux/l2tp.h", "L2TP_CMD_"),
    "macsec": ("linux/if_macsec.h", "MACSEC_CMD_"),
    "SEG6": ("linux/seg6_genl.h", "SEG6_CMD_"),
    "IOAM6": ("linux/ioam6_genl.h", "IOAM6_CMD_"),
    "fou": ("linux/fou.h", "FOU_CMD_"),
    "gtp": ("linux/gtp.h", "GTP_CMD_"),
    "psample": ("linux/psample.h", "PSAMPLE_CMD_"),
    "dpll": ("linux/dpll.h", "DPLL_CMD_"),
    "handshake": ("linux/handshake.h", "HANDSHAKE_CMD_"),
    "vdpa": ("linux/vdpa.h", "VDPA_CMD_"),
    "batadv": ("linux/batman_adv.h", "BATADV_CMD_"),
    "TIPCv2": ("linux/tipc_netlink.h", "TIPC_NL_"),
    "HSR": ("linux/hsr_netlink.h", "HSR_C_"),
    "VFS_DQUOT": ("linux/quota.h", "QUOTA_NL_C_"),
    "ila": ("linux/ila.h", "ILA_CMD_"),
}

# nfnetlink subsystem (NFNL_SUBSYS_<name>) -> (header, prefix of its messages).
NFNL_MESSAGES = {
    "NFTABLES": ("linux/netfilter/nf_tables.h", "NFT_MSG_"),
    "CTNETLINK": ("linux/netfilter/nfnetlink_conntrack.h", "IPCTNL_MSG_CT_"),
    "CTNETLINK_EXP": ("linux/netfilter/nfnetlink_conntrack.h", "IPCTNL_MSG_EXP_"),
    "QUEUE": ("linux/netfilter/nfnetlink_queue.h", "NFQNL_MSG_"),
    "ULOG": ("linux/netfilter/nfnetlink_log.h", "NFULNL_MSG_"),
    "ACCT": ("linux/netfilter/nfnetlink_acct.h", "NFNL_MSG_ACCT_"),
    "CTHELPER": ("linux/netfilter/nfnetlink_cthelper.h", "NFNL_MSG_CTHELPER_"),
    "CTNETLINK_TIMEOUT": ("linux/netfilter/nfnetlink_cttimeout.h", "IPCTNL_MSG_TIMEOUT_"),
    "NFT_COMPAT": ("linux/netfilter/nf_tables_compat.h", "NFNL_MSG_COMPAT_"),
    "OSF": ("linux/netfilter/nfnetlink_osf.h", "OSF_MSG_"),
    "HOOK": ("linux/netfilter/nfnetlink_hook.h", "NFNL_MSG_HOOK_"),
    "IPSET": ("linux/netfilter/ipset/ip_set.h", "IPSET_CMD_"),
}

# Names that mark a range, not a message: *_UNSPEC, *_NONE, *_MAX, *_COUNT, __*.
_NOT_A_NAME = re.compile(r"^__|_(UNSPEC|NONE|MAX|CNT|COUNT)$")
_ENUM = re.compile(r"\benum\s*(\w*)\s*\{([^{}]*)\}", re.S)
_DEFINE = re.compile(r"^#define\s+(\w+)\s", re.M)
# Compiler keywords the uapi headers use that the C parser does not take.
_CPP_DEFINES = ("-D__attribute__(x)=", "-D__extension__=", "-D__inline__=", "-D__signed__=signed")


def _preprocess(header, *flags, source=""):
    """header (and source after it) through the C preprocessor; "" if the
    header or cpp is missing. linux/netlink.h comes first: some headers use
    its macros without including it (nfnetlink.h: NLMSG_MIN_TYPE)."""
    cpp = shutil.which("cpp")
    if cpp is None:
        return ""
    text = f"#include <linux/netlink.h>\n#include <{header}>\n{source}\n"
    done = subprocess.run([cpp, "-P", *_CPP_DEFINES, *flags, "-"], input=text,
                          capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def _evaluate(body):
    """{name: value} of an enum body, evaluated by cffi; {} if it cannot
    (an enum of casts, for instance). A name keeps anonymous enums' values."""
    ffi = cffi.FFI()
    try:
        ffi.cdef(f"enum nlt_enum {{{body}}};")
    except (cffi.CDefError, cffi.FFIError):
        return {}
    return ffi.typeof("enum nlt_enum").relements


@functools.lru_cache(maxsize=None)
def enums(header):
    """header's enums, each as {name: value} ([] without the header)."""
    return [_evaluate(body) for _, body in _ENUM.findall(_preprocess(header))]


@functools.lru_cache(maxsize=None)
def macros(header, prefix):
    """header's #defines starting with prefix that expand to an integer: name -> value."""
    names = [n for n in _DEFINE.findall(_preprocess(header, "-dM")) if n.startswith(prefix)]
    # The preprocessor expands each inside an enum, which cffi evaluates.
    source = f"enum nlt_macros {{ {', '.join(f'nlt_m_{n} = {n}' for n in names)} }};"
    found = _ENUM.findall(_preprocess(header, source=source))
    if not found:
        return {}
    values = {}
    for item in found[-1][1].split(","):
        values.update(_evaluate(item))
    return {name[len("nlt_m_"):]: value for name, value in values.items()}


def _by_value(names, prefix, strip=""):
    """{value: name} of names starting with prefix, range markers left out;
    strip: a part of the prefix to drop from the shown name."""
    out = {}
    for name, value in sorted(names.items(), key=lambda kv: kv[1]):
        if name.startswith(prefix) and not _NOT_A_NAME.search(name):
            out.setdefault(value, name.replace(strip, "", 1) if strip else name)
    return out


def _enum_names(header, prefix, member=None):
    """{value: name} of header's enumerators starting with prefix, from the
    enum that has member (all enums without one)."""
    names = {}
    for enum in enums(header):
        if member is None or member in enum:
            names.update(enum)
    return _by_value(names, prefix)


@functools.lru_cache(maxsize=None)
def genl_commands(family, to_kernel=True):
    """{cmd: name} of a generic-netlink family ({} if unknown). to_kernel:
    requests; False: the kernel's replies and notifications (they differ
    for families with an enum per direction)."""
    where = GENL_COMMANDS.get(family)
    if not where:
        return {}
    header, prefix, *members = where
    return _enum_names(header, prefix, members[0 if to_kernel else 1] if members else None)


@functools.lru_cache(maxsize=None)
def nfnl_subsystems():
    """{subsystem id: name without NFNL_SUBSYS_}."""
    return _by_value(macros("linux/netfilter/nfnetlink.h", "NFNL_SUBSYS_"), "NFNL_SUBSYS_", strip="NFNL_SUBSYS_")


@functools.lru_cache(maxsize=None)
def nfnl_messages(subsystem):
    """{message id: name} of an nfnetlink subsystem (by name)."""
    where = NFNL_MESSAGES.get(subsystem)
    return _enum_names(*where) if where else {}


def nfnl_type(name):
    """The nlmsg_type of an nfnetlink message name (NFT_MSG_NEWTABLE), or None."""
    return _nfnl_types_by_name().get(name)


@functools.lru_cache(maxsize=None)
def _nfnl_types_by_name():
    names = {n: t for t, n in nfnl_batch_types().items()}
    for subsys_id, subsys in nfnl_subsystems().items():
        names.update({n: subsys_id << 8 | m for m, n in nfnl_messages(subsys).items()})
    return names


@functools.lru_cache(maxsize=None)
def nfnl_batch_types():
    """{type: name} of the batch markers: NFNL_MSG_BATCH_BEGIN, _END."""
    return _by_value(macros("linux/netfilter/nfnetlink.h", "NFNL_MSG_BATCH_"), "NFNL_MSG_BATCH_")


@functools.lru_cache(maxsize=None)
def sock_diag_types():
    names = dict(macros("linux/inet_diag.h", "TCPDIAG_GETSOCK"), **macros("linux/inet_diag.h", "DCCPDIAG_GETSOCK"),
                 **macros("linux/sock_diag.h", "SOCK_DIAG_BY_FAMILY"), **macros("linux/sock_diag.h", "SOCK_DESTROY"))
    return {v: n for n, v in names.items()}


@functools.lru_cache(maxsize=None)
def xfrm_types():
    return _enum_names("linux/xfrm.h", "XFRM_MSG_")


# audit's message types: 1000-2999 (linux/audit.h's ranges), without the
# range markers (AUDIT_FIRST_USER_MSG, ...); its other AUDIT_ macros (fields,
# operators, arches) lie outside.
_AUDIT_TYPES = range(1000, 3000)


@functools.lru_cache(maxsize=None)
def audit_types():
    names = {n: v for n, v in macros("linux/audit.h", "AUDIT_").items()
             if v in _AUDIT_TYPES and "_FIRST_" not in n and "_LAST_" not in n}
    return _by_value(names, "AUDIT_")
