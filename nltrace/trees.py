"""Tree assembly: one kernel record -> the JSON contract's tree object.

The kernel sends nodes in call order with their depth; nesting them back is
a walk with a stack. Everything a view or a test needs is in the returned
dict, which is also exactly what `flow --json` prints.
"""

import sys

from pyroute2.netlink import GENL_ID_CTRL, NETLINK_GENERIC

from nltrace import records
from nltrace.catalogue import TREE_FUNCTIONS
from nltrace.decode import buffer_heads, decode_message, errno_name, message_head, protocol_name

C = records.C
_VOID = {p.name for p in TREE_FUNCTIONS if p.returns_void}
# func id -> (kernel function name, returns void)
FUNCS = {i: (name, name in _VOID) for i, name in records.FUNC_NAMES.items()}
NETLINK_ACK = C.NLT_FN_netlink_ack
# What a node's arg is (records.h, struct nlt_node): an skb, or a message's header.
SKB_ARG = {C.NLT_FN_netlink_unicast, C.NLT_FN___netlink_sendskb}
HEAD_ARG = {C.NLT_FN_rtnetlink_rcv_msg, C.NLT_FN_genl_rcv_msg, C.NLT_FN_netlink_ack}
GENL_RCV_MSG = C.NLT_FN_genl_rcv_msg
# func id -> the key its node's aux is shown as
AUX_KEYS = {C.NLT_FN_netlink_insert: "portid", C.NLT_FN_genl_bind: "group", C.NLT_FN_netlink_broadcast: "group",
            C.NLT_FN_netlink_broadcast_filtered: "group",
            C.NLT_FN_netlink_unicast: "portid", C.NLT_FN___netlink_sendskb: "portid",
            C.NLT_FN_netlink_overrun: "portid"}
PID_T_MAX = (1 << 31) - 1     # pid_t is a signed 32-bit int: no kernel gives a larger pid or tid
EINTR = -4
ESRCH = -3
BROADCASTS = ("netlink_broadcast", "netlink_broadcast_filtered")
# The roots of a socket's trees (tree.bpf.h, socket_root()): their records hold its facts, never a message.
SOCKET_ROOTS = ("netlink_create", "netlink_bind", "netlink_connect", "netlink_release",
                "__netlink_kernel_create", "netlink_kernel_release")


def _cstr(char_array):
    return records.ffi.string(char_array).decode("utf-8", "replace")


def nest(nodes):
    """[(depth, node_dict)] in call order -> the root node dict with children.
    A node whose depth jumps past its parent's child level is attached to the
    deepest open node, so a lost entry never loses the calls after it."""
    if not nodes:
        return None
    root = nodes[0][1]
    stack = [root]
    for depth, node in nodes[1:]:
        del stack[max(depth, 1):]
        stack[-1]["children"].append(node)
        stack.append(node)
    return root


def mark_signals(node):
    """Two returns are the kernel's signals, not failures. netlink_dump_start()
    returns -EINTR once the dump has begun ("no ack, the dump answers"): a
    call that returns it around a netlink_dump gets dump_started instead of
    an errno. netlink_broadcast(_filtered) returns -ESRCH when no socket listens on the
    group, which its callers (rtnl_notify, ...) ignore: no_listener.
    Returns whether node's subtree holds a netlink_dump."""
    dumps = False
    for child in node["children"]:
        dumps |= mark_signals(child)
    if node["func"] in BROADCASTS and node["ret"] == ESRCH:
        node.pop("errno", None)
        node["no_listener"] = True
    elif dumps and node["ret"] == EINTR:
        node.pop("errno", None)
        node["dump_started"] = True
    return dumps or node["func"] == "netlink_dump"


def assemble(rec, symbolize, families=None):
    """rec: a parsed struct nlt_record. symbolize: kernel address -> name or None.
    families: a run's {id: name} of generic netlink families (GenlFamilies),
    which names a reply or event: only a request's dispatch records its
    family. Raises ValueError for a record no kernel program writes: without
    its root, of a pid no pid_t holds, or a socket's tree without its socket's facts."""
    if not rec.nr_nodes:
        raise ValueError("record holds no nodes, not even its root")
    if rec.pid > PID_T_MAX or rec.tid > PID_T_MAX:
        raise ValueError(f"record's pid {rec.pid} or tid {rec.tid} is beyond a pid_t")
    nodes = []
    dispatched = _cstr(rec.genl_family) or None
    capture = records.capture_of(rec)
    family = dispatched or (families.name(rec.protocol, capture.data) if families else None)
    for start_ns, end_ns, ret, arg, func_id, depth, flags, aux in records.node_tuples(rec):
        func, void = FUNCS.get(func_id) or (f"func#{func_id}", False)
        duration = end_ns - start_ns if end_ns else None
        node = {"func": func, "offset_ns": start_ns - rec.ts_ns, "duration_ns": duration,
                "ret": None if void or not end_ns else ret, "children": []}
        if flags & C.NLT_NODE_INLINED:
            node["inlined"] = True
        if node["ret"] is not None and -4095 <= ret < 0:
            node["errno"] = errno_name(ret)
        if func_id == NETLINK_ACK:
            node["ack_error"] = aux - (1 << 32) if aux >= 1 << 31 else aux
        elif func_id in AUX_KEYS:
            node[AUX_KEYS[func_id]] = aux
        if arg and func_id in SKB_ARG:
            node["skb"] = hex(arg)
        elif arg and func_id in HEAD_ARG:
            node["message"] = message_head(rec.protocol, arg, family, aux if func_id == GENL_RCV_MSG else None)
        nodes.append((depth, node))
    root = nest(nodes)
    if root:
        mark_signals(root)

    facts = records.socket_facts(rec)
    if facts is None and (rec.flags & C.NLT_REC_SOCKET or root["func"] in SOCKET_ROOTS):
        raise ValueError(f"{root['func']} record without its socket's facts "
                         f"(flags {rec.flags:#x}, {rec.msg_len} bytes of msg)")
    message = None if rec.flags & C.NLT_REC_SOCKET else \
        decode_message(capture.data, rec.protocol, family, capture.length)
    if families is not None and message:
        families.learn(rec.protocol, message, dispatched)

    err = rec.error
    if not err and root and "errno" in root:   # (mark_signals took it from a broadcast nobody heard)
        err = root["ret"]
    error = None
    if err:
        error = {"errno": abs(err), "name": errno_name(err), "extack": _cstr(rec.extack) or None}

    tree = {
        "ts_ns": rec.ts_ns,
        "pid": rec.pid,
        "tid": rec.tid,
        "comm": _cstr(rec.comm),
        "protocol": protocol_name(rec.protocol),
        "message": message,
        "handler": symbolize(rec.handler) if rec.handler else None,
        "error": error,
        "truncated": bool(rec.flags & C.NLT_REC_TRUNCATED),
        "incomplete": bool(rec.flags & C.NLT_REC_INCOMPLETE),
        "root": root,
    }
    if rec.skb:
        tree["skb"] = hex(rec.skb)
    sent = []
    if root and root["func"] == "netlink_sendmsg" and not rec.flags & C.NLT_REC_SOCKET:
        sent = buffer_heads(capture.data, rec.protocol, family, capture.length)
    messages = messages_of(root, sent) if root else []
    if messages:
        tree["messages"] = messages
    if facts is not None:
        tree["socket"] = socket_of(facts, root)
    return tree


class GenlFamilies:
    """The generic netlink family ids of one run: {id: name}, learned as its
    trees come (the family a request's dispatch recorded, nlctrl's
    NEWFAMILY replies and events, and DELFAMILY), and seeded with the
    kernel's own list when live. The kernel gives each family its id at
    registration, so a stream from another machine names its replies only
    once it has shown their family."""

    def __init__(self, known=None):
        self.ids = dict(known or {})

    def name(self, protocol, data):
        """The family of the first message of data, a capture of protocol, if known."""
        if protocol != NETLINK_GENERIC or len(data) < 6:
            return None
        return self.ids.get(int.from_bytes(data[4:6], sys.byteorder))

    def learn(self, protocol, message, dispatched):
        if protocol != NETLINK_GENERIC or message.get("type") is None:
            return
        if message["type"] != GENL_ID_CTRL:
            if dispatched:
                self.ids[message["type"]] = dispatched
            return
        attrs = message.get("attrs") or {}
        family_id, name = attrs.get("CTRL_ATTR_FAMILY_ID"), attrs.get("CTRL_ATTR_FAMILY_NAME")
        if not isinstance(family_id, int) or family_id == GENL_ID_CTRL:
            return
        if message.get("cmd_name") == "CTRL_CMD_DELFAMILY":
            self.ids.pop(family_id, None)
        elif message.get("cmd_name") == "CTRL_CMD_NEWFAMILY" and isinstance(name, str):
            self.ids[family_id] = name


def messages_of(root, sent):
    """Each message of the buffer a sendmsg carried, in order: sent, the
    headers split from the capture, then those only a node read (past the
    capture), each with the errno its dispatch returned or its ack reported.
    A dispatch (rtnetlink_rcv_msg, genl_rcv_msg) or ack node matches the
    first message of its type and seq it has not yet served."""
    out = [dict(head, errno=None) for head in sent]
    dispatched, acked = set(), set()
    for node in walk(root):
        head = node.get("message")
        if head is None:
            continue
        served = acked if node["func"] == "netlink_ack" else dispatched
        i = next((i for i, m in enumerate(out) if i not in served
                  and (m["type"], m["seq"]) == (head["type"], head["seq"])), None)
        if i is None:
            out.append(dict(head, errno=None))
            i = len(out) - 1
        served.add(i)
        if node["func"] == "netlink_ack":
            if node.get("ack_error"):
                out[i]["errno"] = errno_name(node["ack_error"])
        else:
            out[i].update(head, errno=node.get("errno"))
    return out


def socket_of(facts, root):
    """The JSON contract's "socket" of a socket tree: what its root read, and
    the portid netlink_insert gave (bind, or the autobind of a connect)."""
    out = {"sock": hex(facts["sock"]) if facts["sock"] else None, "netns": facts["netns"] or None}
    func = root["func"] if root else None
    if func == "netlink_create":
        out["kern"] = bool(facts["kern"])
    elif func in ("netlink_bind", "netlink_connect"):
        out["portid_asked"] = facts["portid"]
        out["groups"] = [bit + 1 for bit in range(32) if facts["groups"] >> bit & 1]
    elif func == "__netlink_kernel_create":
        out["nr_groups"] = facts["groups"]
    elif func == "netlink_release" and facts["portid"]:
        out["portid"] = facts["portid"]
    inserted = [n["portid"] for n in walk(root) if n["func"] == "netlink_insert" and not n.get("errno")] if root else []
    if inserted:
        out["portid"] = inserted[-1]
    joined = [n["group"] for n in walk(root) if n["func"] == "genl_bind"] if root else []
    if joined:
        out["genl_groups"] = joined
    return out


def walk(node):
    """node and every node below it, in call order."""
    yield node
    for child in node["children"]:
        yield from walk(child)
