"""Projects trees for comparison: shapes, expected shapes with optional nodes, sent-message summaries.

Expected trees (N) are matched against a tree's shape with optional nodes
allowed (a function inlined at that call site); the functions this kernel
cannot trace at all are left out of the expected trees. Two runs of
tests/clients/workload.sh (agent vs BCC on x86, ARM vs x86) are compared by
each sent message's decoded request and its call tree, over the functions
both runs traced (kernels inline different functions, so a node one kernel
lacks is left out of both).
"""

import functools
import json

from nltrace.catalogue import FLOW_DETAIL, INLINED_NODES

AVAILABLE_FILTER_FUNCTIONS = "/sys/kernel/tracing/available_filter_functions"
WORKLOAD_COMMS = {"busybox", "nlload"}
NLLOAD_SENDS = 6   # tests/clients/workload.sh: 3 genl + 2 get + 1 dump


def N(func, *children):
    """An expected node. A name ending in "?" may be absent: inlined at that
    call site, or not traceable on this kernel; its children then stand in
    its place."""
    return (func, list(children))


def shape(node, keep=None):
    """(func, children) of a tree's node. With keep, nodes outside it are
    dropped and their children lifted (a dropped node gives the list of them)."""
    kids = []
    for child in node["children"]:
        sub = shape(child, keep)
        kids.extend(sub if isinstance(sub, list) else [sub])
    return (node["func"], kids) if keep is None or node["func"] in keep else kids


def matches(expected, actual):
    """Do the lists of (func, children) match, optional nodes allowed?"""
    if not expected:
        return not actual
    (func, kids), rest = expected[0], expected[1:]
    if func.endswith("?"):
        present = (actual and actual[0][0] == func[:-1] and matches(kids, actual[0][1])
                   and matches(rest, actual[1:]))
        return bool(present) or matches(kids + rest, actual)
    return bool(actual) and actual[0][0] == func and matches(kids, actual[0][1]) and matches(rest, actual[1:])


@functools.cache
def hookable_functions():
    """The functions this kernel lets ftrace, kprobes and trampolines hook
    (compiler variants such as .isra keep their suffix): a function missing
    here is inlined everywhere, or not traceable."""
    with open(AVAILABLE_FILTER_FUNCTIONS) as f:
        return {line.split()[0] for line in f}


def traceable(func, hookable):
    return any(s == func or s.startswith(func + ".") for s in hookable)


def as_shown(expected, hookable=None):
    """The documented nodes as flow shows them by default: the steps it
    leaves out unless --all-probes (FLOW_DETAIL) replaced by their children,
    and so are the functions this kernel cannot trace (hookable: what it can,
    hookable_functions()), but for those a stand-in probe records (INLINED_NODES)."""
    out = []
    for func, kids in expected:
        kids = as_shown(kids, hookable)
        name = func.rstrip("?")
        seen = hookable is None or traceable(name, hookable) or (
            name in INLINED_NODES and traceable(INLINED_NODES[name], hookable))
        if name in FLOW_DETAIL or not seen:
            out += kids
        else:
            out.append((func, kids))
    return out


def assert_shape(tree, expected):
    shown = as_shown([expected], hookable_functions())
    assert matches(shown, [shape(tree["root"])]), (
        f"tree {json.dumps(shape(tree['root']))} does not match the documented {json.dumps(shown)}")


def functions(trees):
    seen = set()

    def walk(node):
        seen.add(node["func"])
        for child in node["children"]:
            walk(child)
    for tree in trees:
        walk(tree["root"])
    return seen


def sent(trees):
    """The workload's netlink_sendmsg trees, in order."""
    return [t for t in trees if t["comm"] in WORKLOAD_COMMS and t["root"]["func"] == "netlink_sendmsg"]


def summary(tree, keep):
    msg = tree["message"] or {}
    return {"comm": tree["comm"], "protocol": tree["protocol"], "type": msg.get("type_name"),
            "flags": msg.get("flags"), "family": msg.get("family"), "cmd": msg.get("cmd_name"),
            "handler": tree["handler"], "error": (tree["error"] or {}).get("name"),
            "shape": shape(tree["root"], keep)}


def summaries(trees, other):
    """Summaries of trees' sent messages, over the functions seen in both trees and other."""
    keep = functions(sent(trees)) & functions(sent(other))
    return [summary(t, keep) for t in sent(trees)]


def nlload_sends(trees):
    return [t for t in sent(trees) if t["comm"] == "nlload"]


# The --text run's workload (board and VM): 2 CTRL_CMD_GETFAMILY, then one link dump.
AGENT_TEXT_LOAD = ("genl --count 2", "dump --count 1")


def check_agent_text(lines):
    """nltrace-agent --text of AGENT_TEXT_LOAD: 2 genl sends and their 2
    reads, each named as nltrace flow names it (family/command, flags) and
    each request with its handler; the dump's request, whose dispatch
    returned the kernel's "dump started" (-EINTR), named so and not as an
    error; and each nlload's socket created, bound and closed (one tree each)."""
    heads = [line for line in lines if not line.startswith((" ", "nltrace-agent:"))]   # one per tree
    genl = [h for h in heads if " NETLINK_GENERIC " in h and " socket" not in h]
    requests = [h for h in genl if " NETLINK_GENERIC nlctrl/CTRL_CMD_GETFAMILY [REQUEST" in h
                and h.endswith(" -> ctrl_getfamily")]
    assert len(genl) == 4 and len(requests) == 2, lines
    assert all(" NETLINK_GENERIC nlctrl/CTRL_CMD_" in h for h in genl), lines
    dumps = [h for h in heads if " NETLINK_ROUTE RTM_GETLINK [REQUEST|DUMP]" in h
             and h.endswith(" -> rtnl_dump_ifinfo")]
    assert len(dumps) == 1, lines
    assert sum(1 for line in lines if line.startswith("  netlink_sendmsg ")) == 3, lines
    assert sum(1 for line in lines if line.lstrip().startswith("rtnetlink_rcv_msg ")
               and line.endswith(" = -4 (dump started)")) == 1, lines
    assert not any(line.endswith(" EINTR") for line in lines), lines
    roots = [line.split()[0] for line in lines if line.startswith("  netlink_") and not line.startswith("   ")]
    assert [r for r in roots if r in ("netlink_create", "netlink_bind", "netlink_release")] == \
        ["netlink_create", "netlink_bind", "netlink_release"] * 2, lines
