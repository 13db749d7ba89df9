"""Links across processes: each message the kernel queues on a user socket,
tied to the read that consumes it.

A tree's __netlink_sendskb nodes are its deliveries (a reply, an ack, a
dump's batch, each copy of a broadcast, a user-to-user message), each with
the skb queued and the receiver's portid; a netlink_overrun node is a copy
dropped (the receiver reads ENOBUFS instead). A netlink_recvmsg tree names
the skb it read (captured as the read frees it), which is one of those.
Trees get ids in the order they are read, filtered out or not.

Trees arrive as they end, so either side of a link can come first: a read
that came after its delivery names it ("from"); a delivery whose read ended
first (a blocking read returns while the sender is still in its sendmsg)
names that read ("read_by").
"""

from collections import OrderedDict

from nltrace.trees import walk

# The ancestor that says why an skb was queued; none of these: a unicast.
VIA = {"netlink_ack": "ack", "netlink_dump": "dump", "netlink_broadcast": "broadcast",
       "netlink_broadcast_filtered": "broadcast"}
# Deliveries waiting for their read, and reads for their delivery, by skb
# address; the oldest addresses are forgotten first (a message nobody reads,
# or read while nltrace was not running).
MAX_PENDING = 65536
# An address is reused as soon as its skb is freed, so several reads of one
# address can wait for trees still running (a blocking read returns first).
MAX_AT_ONE_ADDRESS = 64


def deliveries(root):
    """(node, via) of each skb queued on a user socket, or dropped, in root's tree."""
    out = []

    def visit(node, via):
        via = VIA.get(node["func"], via)
        if node["func"] in ("__netlink_sendskb", "netlink_overrun"):
            out.append((node, via))
        for child in node["children"]:
            visit(child, via)

    visit(root, "unicast")
    return out


class Links:
    def __init__(self):
        self.next_id = 1
        self.queued = OrderedDict()     # skb -> [deliveries at that address, not yet read]
        self.read = OrderedDict()       # skb -> [reads of that address, whose delivery is not yet seen]
        self.owners = {}                # (protocol, portid) -> {"pid", "comm"} of the socket's process

    def add(self, tree):
        """Give tree its "id"; a read its "from" (where its message came
        from, if that was seen); a tree that queued messages its
        "deliveries" (portid, via, and the receiving process where known)."""
        tree["id"] = self.next_id
        self.next_id += 1
        root = tree["root"]
        if root is None:
            return tree
        me = {"pid": tree["pid"], "comm": tree["comm"]}
        if root["func"] == "netlink_recvmsg" and "skb" in tree:
            read_end = tree["ts_ns"] + (root["duration_ns"] or 0)
            # the last copy queued at that address before the read returned,
            # on a socket of the reading process (where known)
            source = _take(self.queued, tree["skb"],
                           lambda d: d["at_ns"] <= read_end and self._owned_by(tree, d["portid"], me),
                           key=lambda d: -d["at_ns"])
            if source is None:
                _remember(self.read, tree["skb"], dict(me, tree=tree["id"], end_ns=read_end))
            else:
                tree["from"] = {key: source[key] for key in ("tree", "pid", "comm", "via")}
                # from the producing tree's start to the read's return
                tree["from"]["delay_ns"] = max(0, read_end - source["ts_ns"])
                self.owners[(tree["protocol"], source["portid"])] = me
        if root["func"] == "netlink_release":
            self._forget(tree["protocol"], tree["socket"].get("portid"))
        elif tree.get("socket") and tree["socket"].get("portid"):
            self.owners[(tree["protocol"], tree["socket"]["portid"])] = me
        # an autobound socket gets its portid in netlink_insert, inside its first send's tree
        for node in walk(root):
            if node["func"] == "netlink_insert" and node.get("portid") and not node.get("errno"):
                self.owners[(tree["protocol"], node["portid"])] = me
        out = []
        for node, via in deliveries(root):
            portid = node.get("portid")
            delivery = {"portid": portid, "via": via, "dropped": node["func"] == "netlink_overrun"}
            delivery.update(self.owners.get((tree["protocol"], portid), {}))
            out.append(delivery)
            if "skb" not in node:
                continue
            at_ns = tree["ts_ns"] + node["offset_ns"]
            # the first read of that address to return after the copy was queued
            reader = _take(self.read, node["skb"],
                           lambda r: r["end_ns"] >= at_ns and self._owned_by(tree, portid, r),
                           key=lambda r: r["end_ns"])
            if reader is None:
                _remember(self.queued, node["skb"], {"tree": tree["id"], "pid": tree["pid"], "comm": tree["comm"],
                                                     "via": via, "portid": portid, "ts_ns": tree["ts_ns"],
                                                     "at_ns": at_ns, "protocol": tree["protocol"]})
            else:
                delivery["read_by"] = {key: reader[key] for key in ("tree", "pid", "comm")}
                self.owners[(tree["protocol"], portid)] = {"pid": reader["pid"], "comm": reader["comm"]}
        if out:
            tree["deliveries"] = out
        return tree

    def _forget(self, protocol, portid):
        """A socket closed: its unread copies will never be read (their skbs'
        addresses will be reused) and its portid may go to another process."""
        if not portid:
            return
        self.owners.pop((protocol, portid), None)
        for skb, waiting in list(self.queued.items()):
            waiting[:] = [d for d in waiting if d["portid"] != portid or d["protocol"] != protocol]
            if not waiting:
                del self.queued[skb]

    def _owned_by(self, tree, portid, process):
        """Whether portid may be process's socket: it is, or its owner is not known."""
        owner = self.owners.get((tree["protocol"], portid))
        return owner is None or owner["pid"] == process["pid"]


def _remember(pending, skb, what):
    """Add what to the side of skb's address still waiting for its match."""
    waiting = pending.setdefault(skb, [])
    waiting.append(what)
    del waiting[:-MAX_AT_ONE_ADDRESS]
    pending.move_to_end(skb)
    while len(pending) > MAX_PENDING:
        pending.popitem(last=False)


def _take(pending, skb, fits, key):
    """Remove and return, of what waits at skb's address and fits, the first by key."""
    waiting = pending.get(skb, [])
    match = min((w for w in waiting if fits(w)), key=key, default=None)
    if match is not None:
        waiting.remove(match)
        if not waiting:
            del pending[skb]
    return match
