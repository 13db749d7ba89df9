"""Trees as a Perfetto trace: nested slices per thread, with flows from each delivery to its read.

The trace is Perfetto's native protobuf (a Trace of TracePackets with
TrackEvents): its slices keep their nesting even when a parent and its child
start in the same nanosecond, which the legacy JSON format loses. Only the
part of Perfetto's schema used here is declared, with Perfetto's field
numbers; Perfetto's own Python package needs a newer protobuf than some
systems have, and nltrace should not depend on it.
"""

import hashlib

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from nltrace.links import deliveries
from nltrace.views import message_text

F = descriptor_pb2.FieldDescriptorProto
# message -> (field, number, type or message, repeated), as in perfetto's
# protos/perfetto/trace/{trace,trace_packet}.proto, track_event/{track_event,
# track_descriptor,process_descriptor,thread_descriptor,debug_annotation}.proto.
# TrackEvent.type is an enum there: on the wire, the same varint as an int32.
SCHEMA = {
    "Trace": [("packet", 1, "TracePacket", True)],
    "TracePacket": [("timestamp", 8, F.TYPE_UINT64, False),
                    ("trusted_packet_sequence_id", 10, F.TYPE_UINT32, False),
                    ("track_event", 11, "TrackEvent", False),
                    ("sequence_flags", 13, F.TYPE_UINT32, False),
                    ("track_descriptor", 60, "TrackDescriptor", False)],
    "TrackEvent": [("debug_annotations", 4, "DebugAnnotation", True),
                   ("type", 9, F.TYPE_INT32, False),
                   ("track_uuid", 11, F.TYPE_UINT64, False),
                   ("name", 23, F.TYPE_STRING, False),
                   ("flow_ids", 47, F.TYPE_FIXED64, True),
                   ("terminating_flow_ids", 48, F.TYPE_FIXED64, True)],
    "TrackDescriptor": [("uuid", 1, F.TYPE_UINT64, False),
                        ("process", 3, "ProcessDescriptor", False),
                        ("thread", 4, "ThreadDescriptor", False),
                        ("parent_uuid", 5, F.TYPE_UINT64, False)],
    "ProcessDescriptor": [("pid", 1, F.TYPE_INT32, False),
                          ("process_name", 6, F.TYPE_STRING, False)],
    "ThreadDescriptor": [("pid", 1, F.TYPE_INT32, False),
                         ("tid", 2, F.TYPE_INT64, False),
                         ("thread_name", 5, F.TYPE_STRING, False)],
    "DebugAnnotation": [("bool_value", 2, F.TYPE_BOOL, False),
                        ("int_value", 4, F.TYPE_INT64, False),
                        ("string_value", 6, F.TYPE_STRING, False),
                        ("name", 10, F.TYPE_STRING, False),
                        ("dict_entries", 11, "DebugAnnotation", True),
                        ("array_values", 12, "DebugAnnotation", True)],
}
SLICE_BEGIN, SLICE_END = 1, 2                 # TrackEvent.Type
SEQ_INCREMENTAL_STATE_CLEARED = 1             # TracePacket.SequenceFlags
SEQUENCE = 1                                  # every packet's trusted_packet_sequence_id


def _classes():
    """SCHEMA's message classes, from a pool of their own (perfetto's classes may be loaded too)."""
    package = "nltrace.perfetto"
    file = descriptor_pb2.FileDescriptorProto(name="nltrace/perfetto.proto", package=package, syntax="proto2")
    for message, fields in SCHEMA.items():
        out = file.message_type.add(name=message)
        for name, number, kind, repeated in fields:
            field = out.field.add(name=name, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if isinstance(kind, str):
                field.type, field.type_name = F.TYPE_MESSAGE, f".{package}.{kind}"
            else:
                field.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.SerializeToString())
    # GetMessageClass since protobuf 4.22; before it (Debian 12: 4.21), GetPrototype, gone from recent releases.
    get = getattr(message_factory, "GetMessageClass", None) or message_factory.MessageFactory(pool).GetPrototype
    return {message: get(pool.FindMessageTypeByName(f"{package}.{message}")) for message in SCHEMA}


_PB = _classes()
Trace, TrackEvent, DebugAnnotation = _PB["Trace"], _PB["TrackEvent"], _PB["DebugAnnotation"]


def _id(*key):
    """A track uuid or flow id: 64 bits of a hash of what names it, so that
    either end of a flow can compute it alone."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")


def annotation(name, value):
    """A JSON-like value as a DebugAnnotation (dicts and lists nested)."""
    out = DebugAnnotation() if name is None else DebugAnnotation(name=name)
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int) and -1 << 63 <= value < 1 << 63:
        out.int_value = value
    elif isinstance(value, dict):
        out.dict_entries.extend(annotation(str(k), v) for k, v in value.items() if v is not None)
    elif isinstance(value, (list, tuple)):
        out.array_values.extend(annotation(None, v) for v in value)
    else:
        out.string_value = "null" if value is None else str(value)
    return out


def _node_annotations(node):
    """A node's return and extras (errno, portid, skb, message head...)."""
    out = [annotation(k, v) for k, v in node.items()
           if k not in ("func", "children", "offset_ns", "duration_ns") and v is not None]
    if node["duration_ns"] is None and not node.get("inlined"):
        out.append(annotation("return_not_seen", True))
    return out


class PerfettoWriter:
    """Writes each tree add() is given to out (a binary file) at once: a
    Trace's packets, which concatenated make one Trace. close() flushes out."""

    def __init__(self, out):
        self.out = out
        self.names = {}          # track uuid -> the name its last descriptor gave
        self.first = True
        self.trees = self.slices = 0
        self.threads = set()     # thread track uuids

    def add(self, tree, capture):
        root = tree["root"]
        if root is None:
            return
        trace = Trace()
        track = self._tracks(trace, tree)
        # A link is in whichever of its two trees came second ("from" of a
        # read, "read_by" of a delivery); the first was written already and
        # took the flow id it would have: the read's, or the delivery's own.
        starts = {}
        for (node, _), delivery in zip(deliveries(root), tree.get("deliveries", ())):
            if "read_by" in delivery:
                starts[id(node)] = _id("read", delivery["read_by"]["tree"])
            elif "skb" in node:
                starts[id(node)] = _id("delivery", tree["id"], node["skb"])
        ends = {}
        if root["func"] == "netlink_recvmsg" and "skb" in tree:
            source = tree.get("from")
            ends[id(root)] = _id("delivery", source["tree"], tree["skb"]) if source else _id("read", tree["id"])
        fields = {k: v for k, v in tree.items() if k not in ("root", "ts_ns", "pid", "tid", "comm") and v is not None}
        fields["summary"] = message_text(tree)
        extra = [annotation("tree", fields)]
        self._slices(trace, track, tree["ts_ns"], root, None, starts, ends, extra)
        self.out.write(trace.SerializeToString())
        self.trees += 1

    def close(self):
        self.out.flush()

    def summary(self):
        return f"{self.trees} trees as {self.slices} slices on {len(self.threads)} threads"

    def _packet(self, trace, **fields):
        packet = trace.packet.add(trusted_packet_sequence_id=SEQUENCE, **fields)
        if self.first:   # no interned data; said once for the importers that wait for it
            packet.sequence_flags = SEQ_INCREMENTAL_STATE_CLEARED
            self.first = False
        return packet

    def _tracks(self, trace, tree):
        """The uuid of tree's thread track; its TrackDescriptor and its
        process's before their first event, and again when a name changes (a
        renamed thread, a reused pid). A process is named after its main thread."""
        pid, tid, comm = tree["pid"], tree["tid"], tree["comm"]
        process, thread = _id("process", pid), _id("thread", pid, tid)
        self.threads.add(thread)
        name = comm if pid == tid else self.names.get(process)
        if process not in self.names or self.names[process] != name:
            self.names[process] = name
            described = _PB["ProcessDescriptor"](pid=pid)
            if name:
                described.process_name = name
            self._packet(trace, track_descriptor=_PB["TrackDescriptor"](uuid=process, process=described))
        if self.names.get(thread) != comm:
            self.names[thread] = comm
            described = _PB["ThreadDescriptor"](pid=pid, tid=tid, thread_name=comm)
            self._packet(trace, track_descriptor=_PB["TrackDescriptor"](uuid=thread, parent_uuid=process,
                                                                        thread=described))
        return thread

    def _slices(self, trace, track, ts_ns, node, limit, starts, ends, extra=()):
        """node's slice and its children's; returns where it ends. A node
        whose return was not seen ends at limit (where its next sibling
        starts, or its parent's end) or, without one, as its children end."""
        start = ts_ns + node["offset_ns"]
        self.slices += 1
        self._packet(trace, timestamp=start, track_event=TrackEvent(
            type=SLICE_BEGIN, track_uuid=track, name=node["func"],
            debug_annotations=_node_annotations(node) + list(extra),
            flow_ids=[starts[id(node)]] if id(node) in starts else []))
        end = None if node["duration_ns"] is None else start + node["duration_ns"]
        last, children = start, node["children"]
        for i, child in enumerate(children):
            child_limit = ts_ns + children[i + 1]["offset_ns"] if i + 1 < len(children) else end
            last = self._slices(trace, track, ts_ns, child, child_limit, starts, ends)
        if end is None:
            end = last if limit is None else max(last, limit)
        self._packet(trace, timestamp=end, track_event=TrackEvent(
            type=SLICE_END, track_uuid=track,
            terminating_flow_ids=[ends[id(node)]] if id(node) in ends else []))
        return end
