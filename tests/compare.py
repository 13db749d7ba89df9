"""What the agent tests compare between two runs of tests/clients/workload.sh
(agent vs BCC on x86, ARM vs x86): each sent message's decoded request and
its call tree, over the functions both runs traced (kernels inline different
functions, so a node one kernel lacks is left out of both)."""

WORKLOAD_COMMS = {"busybox", "nlload"}
NLLOAD_SENDS = 6   # tests/clients/workload.sh: 3 genl + 2 get + 1 dump


def functions(trees):
    seen = set()

    def walk(node):
        seen.add(node["func"])
        for child in node["children"]:
            walk(child)
    for tree in trees:
        walk(tree["root"])
    return seen


def shape(node, keep):
    """(func, children) with nodes outside keep dropped and their children lifted."""
    kids = []
    for child in node["children"]:
        sub = shape(child, keep)
        kids.extend(sub if isinstance(sub, list) else [sub])
    return (node["func"], kids) if node["func"] in keep else kids


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
