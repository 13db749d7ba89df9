"""Views of assembled trees: rich for people, JSON lines for machines."""

import msgspec

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree


def human_ns(ns):
    if ns is None:
        return "?"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g}{unit}"
    return f"{ns}ns"


# A socket tree's root -> what its head line calls it.
SOCKET_ACTIONS = {"netlink_create": "socket()", "netlink_bind": "bind()", "netlink_connect": "connect()",
                  "netlink_release": "close()", "__netlink_kernel_create": "kernel socket created",
                  "netlink_kernel_release": "kernel socket released"}


def _socket_text(tree):
    sock = tree["socket"]
    words = [SOCKET_ACTIONS.get(tree["root"]["func"], tree["root"]["func"])]
    if "portid_asked" in sock:
        words.append(f"portid={sock['portid_asked']}")
    if sock.get("portid"):
        words.append(f"→ portid {sock['portid']}")
    if sock.get("groups"):
        words.append("groups=" + ",".join(map(str, sock["groups"])))
    if sock.get("genl_groups"):
        words.append("genl groups=" + ",".join(map(str, sock["genl_groups"])))
    if sock.get("nr_groups"):
        words.append(f"{sock['nr_groups']} groups")
    if sock.get("netns"):
        words.append(f"netns={sock['netns']}")
    if sock.get("kern"):
        words.append("(kernel)")
    return " ".join(words)


def message_text(tree):
    if tree.get("socket") is not None:
        return _socket_text(tree)
    msg = tree["message"]
    if not msg:
        return "(no message captured)"
    if msg.get("uevent"):
        return f"uevent {msg['uevent']}"
    if msg["type"] is None:
        return f"malformed: {msg['malformed']}"
    name = msg["type_name"] or f"type {msg['type']}"
    if msg.get("family"):
        name = f"{msg['family']}/{msg.get('cmd_name') or msg['cmd']}"
    elif msg.get("subsys"):
        name = f"{msg['subsys']}/{msg['type_name'] or msg['type'] & 0xff}"
    flags = "|".join(f.replace("NLM_F_", "") for f in msg["flags"]) or "-"
    text = f"{name} [{flags}] seq={msg['seq']} portid={msg['portid']} len={msg['len']}"
    return f"{text}  malformed: {msg['malformed']}" if msg.get("malformed") else text


def _node_label(node):
    label = Text(node["func"], style="bold")
    if node.get("inlined"):
        return label.append("  (inlined: no duration)", style="dim")
    label.append(f"  {human_ns(node['duration_ns'])}", style="cyan")
    ret = node["ret"]
    if node["duration_ns"] is None:
        label.append("  (return not seen)", style="yellow")
    elif ret is None:
        pass   # a void function
    elif "errno" in node:
        label.append(f"  = {ret} {node['errno']}", style="red")
    elif node.get("dump_started"):
        label.append(f"  = {ret} (dump started)", style="dim")
    elif node.get("no_listener"):
        label.append(f"  = {ret} (no listener)", style="dim")
    else:
        label.append(f"  = {ret}", style="dim")
    if node.get("ack_error"):
        label.append(f"  ack error {node['ack_error']}", style="red")
    return label


def render_tree(tree, t0_ns):
    """A rich renderable for one tree. t0_ns: timestamp shown as +0."""
    head = Text(no_wrap=True, overflow="ignore")   # a long head line is kept whole
    head.append(f"+{(tree['ts_ns'] - t0_ns) / 1e9:.6f}s #{tree['id']} " if "id" in tree
                else f"+{(tree['ts_ns'] - t0_ns) / 1e9:.6f}s ", style="dim")
    head.append(f"{tree['comm']}[{tree['pid']}/{tree['tid']}] ", style="green")
    head.append(f"{tree['protocol'] or '?'} ", style="magenta")
    head.append(message_text(tree))
    if tree["handler"]:
        head.append(f" → {tree['handler']}", style="bold blue")
    if tree["error"]:
        err = tree["error"]
        head.append(f"  {err['name']}", style="bold red")
        if err["extack"]:
            head.append(f' "{escape(err["extack"])}"', style="red")
    if tree.get("from"):
        src = tree["from"]
        head.append(f"  ← {src['via']} from {src['comm']}[{src['pid']}] #{src['tree']} "
                    f"+{human_ns(src['delay_ns'])}", style="cyan")
    if tree["truncated"] or tree["incomplete"]:
        head.append("  (" + ", ".join(k for k in ("truncated", "incomplete") if tree[k]) + ")",
                    style="yellow")
    if not tree["root"]:
        return head
    # The head line is printed outside the Tree, which would crop it to the width.
    nodes = Tree(_node_label(tree["root"]))
    _add(nodes, tree["root"]["children"])
    messages = tree.get("messages", ())
    lines = [_message_line(m) for m in messages] if len(messages) > 1 else []
    return Group(head, *lines, nodes, *map(_delivery_line, tree.get("deliveries", ())))


def _message_line(msg):
    """One line per message of a buffer that held several."""
    name = msg["type_name"] or f"type {msg['type']}"
    if msg.get("cmd_name") or msg.get("cmd") is not None:
        name = f"{name}/{msg.get('cmd_name') or msg['cmd']}"
    flags = "|".join(f.replace("NLM_F_", "") for f in msg["flags"]) or "-"
    line = Text(f"  ▸ {name} [{flags}] seq={msg['seq']}", style="magenta")
    if msg["errno"]:
        line.append(f"  {msg['errno']}", style="bold red")
    return line


def _delivery_line(delivery):
    """One line per message the tree queued on a user socket (or dropped)."""
    who = f" {delivery['comm']}[{delivery['pid']}]" if "pid" in delivery else ""
    if delivery["dropped"]:
        return Text(f"  ✗ {delivery['via']} to portid {delivery['portid']}{who}: dropped, ENOBUFS", style="red")
    read = delivery.get("read_by")
    by = f", read by {read['comm']}[{read['pid']}] #{read['tree']}" if read else ""
    return Text(f"  → {delivery['via']} to portid {delivery['portid']}{who}{by}", style="cyan")


def _add(parent, children):
    for child in children:
        _add(parent.add(_node_label(child)), child["children"])


# msgspec: the same compact JSON as json.dumps, about six times faster, which
# counts at thousands of trees per second.
_JSON = msgspec.json.Encoder()


def json_line(tree):
    return _JSON.encode(tree).decode()


UNIT_LABEL = {"ns": "ns", "us": "µs", "ms": "ms"}
BAR_WIDTH = 30


def render_histograms(histograms, unit, by, title):
    """Rich renderables for one interval: a summary table, then each key's
    distribution in the manner of BCC's funclatency. Fits 80 columns."""
    from rich.table import Table

    from nltrace.histograms import UNITS, bucket_bounds

    scale, label = UNITS[unit], UNIT_LABEL[unit]
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column(by, overflow="fold", max_width=30)
    for col in ("count", f"p50 {label}", f"p90 {label}", f"p99 {label}", f"max {label}"):
        table.add_column(col, justify="right")

    def fmt(ns):
        return "-" if ns is None else f"{ns / scale:.4g}"

    for h in histograms:
        table.add_row(h.key, str(h.count), fmt(h.percentile(50)), fmt(h.percentile(90)),
                      fmt(h.percentile(99)), fmt(h.max_ns))
    parts = [table]
    for h in histograms:
        lines = [Text(f"\n{h.key}", style="bold")]
        top = max(h.buckets.values())
        for slot in range(min(h.buckets), max(h.buckets) + 1):
            n = h.buckets.get(slot, 0)
            low, high = bucket_bounds(slot)
            bar = "*" * (round(n / top * BAR_WIDTH) if n else 0)
            lines.append(Text(f"{low / scale:>12.4g} -> {high / scale:<12.4g}: {n:<8} |{bar:<{BAR_WIDTH}}|"))
        parts.append(Text("\n").join(lines))
    return parts
