"""Tree assembly: one kernel record -> the JSON contract's tree object.

The kernel sends nodes in call order with their depth; nesting them back is
a walk with a stack. Everything a view or a test needs is in the returned
dict, which is also exactly what `flow --json` prints.
"""

from nltrace import records
from nltrace.catalogue import TREE_FUNCTIONS
from nltrace.decode import decode_message, errno_name, protocol_name

C = records.C
_VOID = {p.name for p in TREE_FUNCTIONS if p.returns_void}
# func id -> (kernel function name, returns void)
FUNCS = {i: (name, name in _VOID) for i, name in records.FUNC_NAMES.items()}
NETLINK_ACK = C.NLT_FN_netlink_ack


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


def assemble(rec, symbolize):
    """rec: a parsed struct nlt_record. symbolize: kernel address -> name or None."""
    nodes = []
    for start_ns, end_ns, ret, func_id, depth, _, aux in records.node_tuples(rec):
        func, void = FUNCS.get(func_id) or (f"func#{func_id}", False)
        if not end_ns:
            node = {"func": func, "duration_ns": None, "ret": None, "children": []}
        elif void:
            node = {"func": func, "duration_ns": end_ns - start_ns, "ret": None, "children": []}
        else:
            node = {"func": func, "duration_ns": end_ns - start_ns, "ret": ret, "children": []}
            if -4095 <= ret < 0:
                node["errno"] = errno_name(ret)
        if func_id == NETLINK_ACK:
            node["ack_error"] = aux - (1 << 32) if aux >= 1 << 31 else aux
        nodes.append((depth, node))
    root = nest(nodes)

    family = _cstr(rec.genl_family) or None
    message = decode_message(bytes(records.ffi.buffer(rec.msg, rec.msg_len)), rec.protocol, family)

    err = rec.error
    if not err and root and root["ret"] is not None and -4095 <= root["ret"] < 0:
        err = root["ret"]
    error = None
    if err:
        error = {"errno": abs(err), "name": errno_name(err), "extack": _cstr(rec.extack) or None}

    return {
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
