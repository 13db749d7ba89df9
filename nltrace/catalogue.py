"""The probe catalogue: which kernel functions nltrace traces, and why.

The function ids and names come from enum nlt_func in nltrace/bpf/records.h;
this module adds what each one contributes, and the two probes that are not
tree nodes. tree.bpf.h has enter_<name>/exit_<name> programs for each
function (a host test checks that the three agree).
"""

import fnmatch
from dataclasses import dataclass

from nltrace.errors import BadFilter
from nltrace.records import FUNC_NAMES


@dataclass(frozen=True)
class Probe:
    name: str            # kernel function, or tracepoint for kind "raw_tracepoint"
    kind: str            # "function" (kprobe + kretprobe), "kprobe" or "raw_tracepoint"
    programs: tuple      # BPF program names: (entry, exit) or (entry,)
    role: str
    reads_args: bool     # reads arguments, so a compiler-altered variant (.isra) won't do
    returns_void: bool = False
    on_demand: bool = False   # attached only when asked for (it fires kernel-wide)
    stands_in_for: tuple = ()   # attached only where one of these functions is not traceable


# name -> (role, reads_args[, returns_void])
ROLES = {
    "netlink_sendmsg": ("root: a process sends a message; reads the socket's protocol", True),
    "netlink_recvmsg": ("root: a process reads; dump continuations run inside it", True),
    "netlink_unicast": ("delivery to one socket; root when the kernel sends on its own; captures the message", True),
    "netlink_unicast_kernel": ("hands the skb to the kernel socket's input (often inlined)", False),
    "rtnetlink_rcv": ("NETLINK_ROUTE input", False, True),
    "genl_rcv": ("NETLINK_GENERIC input", False, True),
    "netlink_rcv_skb": ("splits the skb into messages and acks each", False),
    "rtnetlink_rcv_msg": ("rtnetlink dispatch of one message; reads its header, names the doit/dumpit "
                          "handler", True),
    "genl_rcv_msg": ("generic netlink dispatch of one message; reads its header and command", True),
    "genl_family_rcv_msg_doit": ("genl doit: names the family and handler", True),
    "genl_family_rcv_msg_dumpit": ("genl dump start: names the family and handler", True),
    "netlink_dump": ("one batch of a dump, in the sender's or the reader's context", False),
    "netlink_broadcast": ("multicast delivery; root when the kernel notifies. Attached where the kernel "
                          "has no netlink_broadcast_filtered", True),
    "netlink_broadcast_filtered": ("multicast delivery, where the kernel has it (not 6.1): netlink_broadcast "
                                   "calls it, and notifications (6.12's rtnetlink, 5.10's uevents) call it "
                                   "directly; root when the kernel notifies", True),
    "netlink_sendskb": ("queues an skb on a user socket", False),
    "__netlink_sendskb": ("queues an skb on a user socket (replies, dumps, each copy of a broadcast); "
                          "reads the skb and the receiver's portid, which link it to its read", True),
    "netlink_overrun": ("a copy dropped: the receiver's buffer is full, it reads ENOBUFS; reads its portid",
                        True, True),
    "netlink_ack": ("the ack or error sent back; reads the errno, the acked message's header and the "
                    "extack message", True, True),
    "nfnetlink_rcv_batch": ("NETLINK_NETFILTER: the messages of a batch (nft) run as one transaction; its "
                            "errors' acks are its children. In the nfnetlink module: traced when the module "
                            "is loaded as nltrace starts", False, True),
    "mutex_lock": ("on rtnl_mutex only: the wait for RTNL; attached only for latency --by rtnl "
                   "(rtnl_lock is inlined into rtnetlink_rcv_msg)", True),
    "netlink_create": ("root: socket(AF_NETLINK); reads the protocol and namespace", True),
    "__netlink_create": ("allocates the socket (user's and kernel's)", False),
    "netlink_bind": ("root: bind(); reads the nl_pid and nl_groups asked for", True),
    "netlink_connect": ("root: connect(); reads the peer's nl_pid and groups", True),
    "netlink_release": ("root: close() of the last reference; the socket leaves its groups", True),
    "netlink_autobind": ("picks a portid for a socket sent on or connected unbound", False),
    "netlink_insert": ("puts the socket in its protocol's table; reads the portid it gets", True),
    "genl_bind": ("a generic-netlink multicast group joined; reads the group", True),
    "__netlink_kernel_create": ("root: a kernel socket (one per protocol and namespace); reads the "
                                "protocol, the input function, the groups and the namespace "
                                "(it returns the socket, a pointer: no ret shown)", True, True),
    "netlink_kernel_release": ("root: a kernel socket released (namespace teardown)", True, True),
}

ON_DEMAND = {"mutex_lock"}
# The functions that can start a tree; loaders attach their entries last, so
# that no tree begins before the probes inside it exist.
ROOT_FUNCTIONS = {"netlink_sendmsg", "netlink_recvmsg", "netlink_unicast", "netlink_broadcast",
                  "netlink_broadcast_filtered",
                  "netlink_create", "netlink_bind", "netlink_connect", "netlink_release",
                  "__netlink_kernel_create", "netlink_kernel_release"}

# Left out of flow's trees unless asked for (--all-probes): each wraps a single
# call of the node below it (rtnetlink_rcv and genl_rcv call netlink_rcv_skb;
# netlink_unicast_kernel the protocol's input; netlink_sendskb
# __netlink_sendskb). They add little to a tree, and an entry and a return
# probe per call is most of what tracing costs.
FLOW_DETAIL = frozenset({"netlink_unicast_kernel", "rtnetlink_rcv", "genl_rcv", "netlink_sendskb"})

# What nltrace latency needs to time messages (--by message, process, rtnl):
# the whole netlink_sendmsg, the message type (captured at the first
# netlink_unicast) and a genl family's name (its doit/dumpit dispatch), plus
# mutex_lock when it is asked for. Every other probe would only add cost: an
# entry and a return probe per call is most of what tracing costs.
MESSAGE_TIMING = frozenset({"netlink_sendmsg", "netlink_unicast", "genl_family_rcv_msg_doit",
                            "genl_family_rcv_msg_dumpit", "mutex_lock"})

# latency --functions attaches a named function with the roots of the trees
# it runs in: netlink_sendmsg, and for these the others (a dump's later
# batches run in reads; the kernel delivers on its own; sockets are made,
# bound and connected outside any message).
_DELIVERY_ROOTS = {"netlink_unicast", "netlink_broadcast", "netlink_broadcast_filtered"}
_SOCKET_ROOTS = {"netlink_create", "netlink_bind", "netlink_connect", "__netlink_kernel_create"}
OTHER_ROOTS = {
    "netlink_dump": {"netlink_recvmsg"},
    "__netlink_sendskb": {"netlink_recvmsg"} | _DELIVERY_ROOTS,
    "netlink_sendskb": {"netlink_recvmsg"} | _DELIVERY_ROOTS,
    "netlink_overrun": _DELIVERY_ROOTS,
    "__netlink_create": _SOCKET_ROOTS,
    "netlink_insert": _SOCKET_ROOTS,
    "netlink_autobind": _SOCKET_ROOTS,
    "genl_bind": _SOCKET_ROOTS,
}

# Called once in a socket's life, not per message: kprobes for these cost
# nothing that shows, while each fentry/fexit pair's trampoline adds to the
# start (README.md, Overhead, startup), so they keep kprobes.
ONCE_PER_SOCKET = frozenset({"netlink_create", "__netlink_create", "netlink_bind", "netlink_connect",
                             "netlink_release", "netlink_autobind", "netlink_insert", "genl_bind",
                             "__netlink_kernel_create", "netlink_kernel_release"})

# A function probed only where the ones it names are not traceable.
STANDS_IN = {"netlink_broadcast": ("netlink_broadcast_filtered",)}

TREE_FUNCTIONS = tuple(
    Probe(name, "function", (f"enter_{name}", f"exit_{name}"), *ROLES[name], on_demand=name in ON_DEMAND,
          stands_in_for=STANDS_IN.get(name, ()))
    for _, name in sorted(FUNC_NAMES.items())
)

GENL_DISPATCH = ("genl_family_rcv_msg_doit", "genl_family_rcv_msg_dumpit")

# Functions whose node a stand-in probe records where the kernel inlines them
# (marked inlined, without a duration): function -> the probe.
INLINED_NODES = {"__netlink_sendskb": "skb_queue_tail"}

CAPTURE_PROBES = (
    Probe("skb_free_datagram", "kprobe", ("capture_skb_free_datagram",),
          "not a node: captures the message a netlink_recvmsg read, and its skb (the link to where it "
          "came from); it fires for every datagram socket's read, and returns at once outside a tree", True),
    Probe("genl_op_from_full", "kprobe", ("capture_genl_op_from_full",),
          "not a node: names the genl family and handler where genl_family_rcv_msg_doit is inlined", True,
          stands_in_for=GENL_DISPATCH),
    Probe("genl_op_from_small", "kprobe", ("capture_genl_op_from_small",),
          "not a node: the same, for families with small ops (nlctrl)", True,
          stands_in_for=GENL_DISPATCH),
    Probe("genl_get_cmd", "kprobe", ("capture_genl_get_cmd", "capture_ret_genl_get_cmd"),
          "not a node: the same where the op lookup calls no genl_op_from_* (the AST2500's 5.10 and 6.12): "
          "the family at its entry, the handler at its return", True, stands_in_for=GENL_DISPATCH),
    Probe("skb_queue_tail", "kprobe", ("capture_skb_queue_tail",),
          "not a node of its own: where __netlink_sendskb is inlined (5.10), each skb it queues on a netlink "
          "socket, shown as that inlined node (no duration); it fires for every queued skb, and returns at "
          "once outside a tree", True, stands_in_for=tuple(INLINED_NODES)),
    Probe("netlink_extack", "raw_tracepoint", ("capture_netlink_extack",),
          "not a node: the extack message a handler set", True),
)

CATALOGUE = TREE_FUNCTIONS + CAPTURE_PROBES

# nltrace flow's default probe set.
FLOW_DEFAULT = frozenset(p.name for p in CATALOGUE if not p.on_demand) - FLOW_DETAIL


def needed(probe, symbols):
    """Whether a probe is worth attaching, given what is traceable (name ->
    symbol or None): one that stands in for inlined functions is not, where
    they can be traced themselves (a probe hit costs even when it adds nothing)."""
    return not probe.stands_in_for or not all(symbols.get(name) for name in probe.stands_in_for)


def roots_for(functions):
    """The roots to attach so that the named functions are timed wherever they run."""
    return frozenset({"netlink_sendmsg"}.union(*(OTHER_ROOTS.get(name, ()) for name in functions)))


def match_functions(patterns):
    """The tree functions that shell-style patterns name ("genl_*"), for
    latency --functions; on-demand ones (mutex_lock: --by rtnl) are not
    among them. Raises BadFilter for a pattern that names none."""
    names = [p.name for p in TREE_FUNCTIONS if not p.on_demand]
    matched = set()
    for pattern in patterns:
        found = fnmatch.filter(names, pattern)
        if not found:
            raise BadFilter(f"--functions: {pattern!r} names no traced function; they are: {', '.join(names)}")
        matched.update(found)
    return frozenset(matched)
