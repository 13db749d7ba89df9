"""Property-based fuzzing (Hypothesis) of everything that reads bytes nltrace
did not make itself: streams (files, pipes from an agent), the records and
histograms in them, and the netlink messages captured in the records.

The seeds are the streams recorded on real kernels (tests/fixtures), cut,
bit-flipped, reordered and rewritten field by field. The properties are the
command line's promise: bad input is one line (StreamError, BadInput; a
record that cannot be parsed or assembled is a ValueError, which run.flow
counts as malformed), never a traceback; decoding a message never raises,
and what it gives is JSON.

Hypothesis draws the choices that matter (which seed, which protocol and
family, how many mutations) and a seed for a random.Random that does the
bulk of each mutation: drawing every byte through Hypothesis would cost
more than the code under test. Runs are deterministic (derandomize, no
example database); EXAMPLES says how many cases each property gets.
"""

import glob
import io
import json
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from nltrace import records, run, uapi
from nltrace.decode import AF_MCTP, PROTOCOLS, RTNL_CLASSES, buffer_heads, decode_message, message_head
from nltrace.errors import BadInput
from nltrace.exports.pcapng import PcapngWriter
from nltrace.exports.perfetto import PerfettoWriter
from nltrace.filters import Filters
from nltrace.histograms import BY_KIND, group, pick_unit
from nltrace.links import Links
from nltrace.sources.stream import StreamSource
from nltrace.stream_format import FRAME, HISTOGRAMS, MAGIC, RECORD, SYMBOLS, StreamError, read_frames
from nltrace.trees import assemble
from nltrace.views import json_line, message_text, render_histograms, render_tree

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
EXAMPLES = {"flow_stream": 1000, "latency_stream": 400, "histograms": 400, "raw_stream": 1500, "record": 1600,
            "decode_random": 1300, "decode_real": 2600, "decode_built": 1300}
assert sum(EXAMPLES.values()) >= 10_000


def fuzz(name):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# python-pcapng warns about its own field types once per writer made.
pcapng_warnings = pytest.mark.filterwarnings("ignore:Field type should not be:DeprecationWarning")


def split(data):
    """[(kind, payload)] of a well-formed stream's frames, the header's included."""
    frames, at = [], len(MAGIC)
    while at < len(data):
        kind, length = FRAME.unpack_from(data, at)
        frames.append((kind, data[at + FRAME.size:at + FRAME.size + length]))
        at += FRAME.size + length
    return frames


def fixture(pattern):
    (path,) = sorted(glob.glob(os.path.join(FIXTURES, pattern)))[-1:]
    with open(path, "rb") as f:
        return split(f.read())


FLOW = fixture("flow-*.nltrace")
AGENT_FLOW = fixture("agent-flow-*.nltrace")
LATENCY = fixture("agent-latency-*.nltrace")
RECORDS = [p for k, p in FLOW + AGENT_FLOW if k == RECORD]
HISTOGRAM_FRAMES = [p for k, p in LATENCY if k == HISTOGRAMS]


def fields_of(ctype):
    """(name, offset, size) of a records.h struct's fields."""
    ffi = records.ffi
    return [(name, f.offset, ffi.sizeof(f.type)) for name, f in ffi.typeof(ctype).fields]


RECORD_FIELDS = fields_of("struct nlt_record")
NODE_FIELDS = fields_of("struct nlt_node")
HIST_HEAD_FIELDS = fields_of("struct nlt_hist_head")
HIST_ENTRY_FIELDS = [f for f in fields_of("struct nlt_hist_entry") if f[0] != "key"] + fields_of("struct nlt_hist_key")

# Values on the edges of what the code compares against.
EDGES = [0, 1, 2, 3, 4, 15, 16, 17, 20, 24, 255, 256, 257, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
         records.C.NLT_MAX_NODES, records.C.NLT_MAX_NODES + 1, records.C.NLT_MSG_CAPTURE,
         records.C.NLT_HIST_SLOTS - 1, records.C.NLT_HIST_SLOTS, records.C.NLT_SLOT_MAX, records.C.NLT_FN_MAX,
         records.C.NLT_REC_SOCKET, records.C.NLT_REC_TRUNCATED | records.C.NLT_REC_INCOMPLETE,
         2**63 - 1, 2**63, 2**64 - 1]


def int_of(rng, size):
    """An unsigned integer of size bytes, often one of EDGES, as little-endian bytes."""
    bits = size * 8
    value = rng.choice([e for e in EDGES if e < 1 << bits]) if rng.random() < 0.6 else rng.getrandbits(bits)
    return value.to_bytes(size, "little")


def overwrite(rng, data, fields, base=0):
    """data (a bytearray) with one of fields (at base) rewritten: an integer
    with an edge or random value, an array with random bytes."""
    _, offset, size = rng.choice(fields)
    at = base + offset
    if at >= len(data):
        return
    if size in (1, 2, 4, 8):
        data[at:at + size] = int_of(rng, size)[:len(data) - at]
    else:
        start = rng.randrange(size)
        chunk = rng.randbytes(rng.randint(1, size - start))
        data[at + start:at + start + len(chunk)] = chunk[:max(0, len(data) - at - start)]


TEXT_TOKENS = ["a", "x0", " ", '"', "\\", "\n", "\t", "\0", "é", "☃", "\U0001f600", "\u2028", "\x1b[31m", "[b]",
               "\ud800", "\udfff"]


def text_of(rng):
    """A short string of TEXT_TOKENS: letters, quotes, control characters,
    non-ASCII, a terminal escape, rich markup, lone surrogates."""
    return "".join(rng.choice(TEXT_TOKENS) for _ in range(rng.randint(0, 4)))


def json_of(rng, depth=2):
    """A JSON value of any kind, containers nested up to depth."""
    kind = rng.randrange(10 if depth else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return int.from_bytes(int_of(rng, 8), "little") * rng.choice((1, -1))
    if kind == 3:
        return rng.choice((2**70, -2**70, 0.5, -1e300, float("nan"), float("inf")))
    if kind in (4, 5, 6, 7):
        return text_of(rng) if kind != 7 else hex(rng.getrandbits(64))
    if kind == 8:
        return [json_of(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice((text_of(rng), hex(rng.getrandbits(64)))): json_of(rng, depth - 1)
            for _ in range(rng.randint(0, 3))}


def mutate_record(rng, payload):
    """A record's bytes with a few of its fields, or its nodes' fields, rewritten."""
    data = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            overwrite(rng, data, RECORD_FIELDS)
        else:
            nodes = max(1, (len(data) - records.NODES_OFFSET) // records.NODE_SIZE)
            overwrite(rng, data, NODE_FIELDS, records.NODES_OFFSET + rng.randrange(nodes) * records.NODE_SIZE)
    if rng.random() < 0.1:     # cut, or padded past its nodes
        data = data[:rng.randint(0, len(data))] if rng.random() < 0.5 else data + rng.randbytes(rng.randint(0, 200))
    return bytes(data)


def mutate_histograms(rng, payload):
    """A HISTOGRAMS frame with a few entries' keys or values, or its head, rewritten."""
    data = bytearray(payload)
    entries = max(0, len(data) - records.HIST_HEAD_SIZE) // records.HIST_ENTRY_SIZE
    for _ in range(rng.randint(1, 4)):
        if entries and rng.random() < 0.85:
            base = records.HIST_HEAD_SIZE + rng.randrange(entries) * records.HIST_ENTRY_SIZE
            overwrite(rng, data, HIST_ENTRY_FIELDS, base)
        else:
            overwrite(rng, data, HIST_HEAD_FIELDS)
    return bytes(data)


HEADER_KEYS = ["version", "record_size", "node_size", "endianness", "mode", "realtime_offset_ns", "arch",
               "pointer_size", "probes"]
HEADER_VALUES = [records.RECORD_SIZE + 8, records.NODE_SIZE - 8, records.C.NLT_STREAM_VERSION + 1, "big", "flow",
                 "latency", -2**40, 2**64, 1_700_000_000 * 10**9, True, "1700000000"]


def mutate_header(rng, payload):
    header = json.loads(payload)
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randint(0, 40))
    if choice == 1:
        return json.dumps(json_of(rng)).encode()
    key = rng.choice(HEADER_KEYS)
    if choice == 2:
        header.pop(key, None)
    else:
        header[key] = rng.choice(HEADER_VALUES) if choice == 3 else json_of(rng)
    return json.dumps(header).encode()


STREAM_OPS = ["drop", "dup", "swap", "kind", "length", "payload", "json", "symbols", "symbols", "field", "field",
              "field", "header"]


def mutate_stream(rng, frames, ops):
    """Stream bytes from frames ([(kind, payload)], the header first) after
    ops mutations: frames dropped, duplicated, swapped, their kinds, lengths
    or payloads rewritten, records' and histograms' fields rewritten, the
    header changed, a symbols frame added; then a few bits flipped, and
    perhaps the end cut off."""
    header = frames[0][1]
    handlers = sorted({hex(struct.unpack_from("=Q", p, 8)[0]) for k, p in frames if k == RECORD} - {"0x0"})
    frames = [[kind, payload, None] for kind, payload in frames]
    for _ in range(ops):
        op, i = rng.choice(STREAM_OPS), rng.randrange(len(frames))
        frame = frames[i]
        if op == "drop" and len(frames) > 1:
            del frames[i]
        elif op == "dup":
            frames.insert(rng.randint(0, len(frames)), list(frame))
        elif op == "swap":
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == "kind":
            frame[0] = rng.randint(1, 5) if rng.random() < 0.5 else rng.getrandbits(8)
        elif op == "length":
            frame[2] = int.from_bytes(int_of(rng, 4), "little") if rng.random() < 0.5 else \
                rng.randint(0, len(frame[1]) + 64)
        elif op == "payload":
            frame[1] = rng.randbytes(rng.randint(0, 2 * records.RECORD_SIZE))
        elif op == "symbols" and handlers:      # a handler of the window's records named anything
            name = text_of(rng) if rng.random() < 0.5 else json_of(rng)
            first = next((j for j, f in enumerate(frames) if f[0] == RECORD), len(frames))
            frames.insert(first, [SYMBOLS, json.dumps({rng.choice(handlers): name}).encode(), None])
        elif op == "json":
            frame[1] = json.dumps(json_of(rng)).encode()
        elif op == "field" and frame[0] == RECORD:
            frame[1] = mutate_record(rng, frame[1])
        elif op == "field" and frame[0] == HISTOGRAMS:
            frame[1] = mutate_histograms(rng, frame[1])
        elif op == "header":
            frames[0][1] = mutate_header(rng, header)
    data = bytearray(MAGIC + b"".join(FRAME.pack(kind, len(payload) if length is None else length) + payload
                                      for kind, payload, length in frames))
    for _ in range(rng.choice((0, 0, 1, 3))):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.2:
        data = data[:rng.randint(0, len(data))]
    return bytes(data)


seeds = st.integers(0, 2**64 - 1)


STREAMS = {"flow": FLOW, "agent-flow": AGENT_FLOW, "agent-latency": LATENCY}


@st.composite
def damaged_stream(draw, names):
    """A window of a recorded stream (STREAMS: its header, its symbols, then
    up to 8 frames from anywhere), with 0-4 mutations (mutate_stream)."""
    base = STREAMS[draw(st.sampled_from(names))]
    body = base[1:]
    start = draw(st.integers(0, len(body) - 1))
    symbols = [f for f in body if f[0] == SYMBOLS]    # so that handlers have names
    window = [base[0]] + symbols + body[start:start + draw(st.integers(0, 8))]
    return mutate_stream(random.Random(draw(seeds)), window, draw(st.integers(0, 4)))


def one_line(error):
    text = str(error)
    assert text and "\n" not in text, repr(text)


# The command line's filters, each on its own so that each is tried on every tree.
FILTERS = [Filters(no_recv=True), Filters(pid=1), Filters(comm="ip"), Filters(protocol="ROUTE"),
           Filters(errors_only=True), Filters(msg_type="RTM_GETLINK"), Filters(msg_type="nlctrl/CTRL_CMD_GETFAMILY")]


class EveryFilter:
    def match(self, tree):
        for f in FILTERS:
            f.match(tree)
        return True


def show_tree(tree, capture):
    json_line(tree)    # the rich view costs much more: test_trees_of_damaged_records_view_and_export draws it


def read_flow(path):
    """What `nltrace flow --input PATH --json --pcapng X --perfetto Y` does
    with a stream: any error but BadInput escaping would be a traceback."""
    try:
        source = StreamSource(path, "flow")
    except BadInput as e:
        return one_line(e)
    try:
        exports = [PcapngWriter(io.BytesIO(), source.realtime_offset_ns), PerfettoWriter(io.BytesIO())]
        outcome = run.flow(source, EveryFilter(), show_tree, one_line, None, exports=exports)
        counts = outcome.counters     # read as cli.flow's summary line reads them
        assert f"{counts.get('lost', 0)} lost, {counts.get('truncated', 0)} truncated"
        for export in exports:
            export.close()
        exports[0].summary()
    except BadInput as e:
        one_line(e)
    finally:
        source.close()


def show_histograms(by):
    console = Console(file=io.StringIO(), width=80)

    def show(ts_ns, histograms):
        unit = pick_unit(histograms)
        json.dumps({"ts_ns": ts_ns, "by": by, "histograms": [h.to_json(unit) for h in histograms]})
        for part in render_histograms(histograms, unit, by, "t"):
            console.print(part)
    return show


def read_latency(path, by):
    """What `nltrace latency --input PATH [--json] --by BY` does with a stream."""
    try:
        source = StreamSource(path, "latency")
    except BadInput as e:
        return one_line(e)
    try:
        run.latency(source, by, None, None, show_histograms(by))
    except BadInput as e:
        one_line(e)
    finally:
        source.close()


@pcapng_warnings
@fuzz("flow_stream")
@given(damaged_stream(["flow", "agent-flow"]))
def test_flow_over_a_damaged_stream_fails_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-flow.nltrace"
    path.write_bytes(data)
    read_flow(str(path))


@fuzz("latency_stream")
@given(damaged_stream(["agent-latency"]), st.sampled_from(sorted(BY_KIND)))
def test_latency_over_a_damaged_stream_fails_in_one_line(tmp_path_factory, data, by):
    path = tmp_path_factory.getbasetemp() / "fuzz-latency.nltrace"
    path.write_bytes(data)
    read_latency(str(path), by)


@fuzz("histograms")
@given(st.sampled_from(HISTOGRAM_FRAMES), seeds, st.sampled_from(sorted(BY_KIND)))
def test_damaged_histograms_parse_or_raise_value_error(payload, seed, shown_by):
    """Closer in than the stream: the keys of a HISTOGRAMS frame rewritten,
    then grouped as `latency` does, each --by, in JSON; one of them drawn."""
    try:
        ts_ns, counts, maxima = records.parse_histograms(mutate_histograms(random.Random(seed), payload))
    except ValueError as e:
        return one_line(e)
    for by in BY_KIND:
        histograms = group(counts, maxima, by)
        unit = pick_unit(histograms)
        json.dumps([h.to_json(unit) for h in histograms])
    show_histograms(shown_by)(ts_ns, group(counts, maxima, shown_by))


@fuzz("raw_stream")
@given(st.one_of(st.binary(max_size=64).map(lambda b: MAGIC + b), st.binary(max_size=64),
                 st.builds(lambda kind, length, payload: MAGIC + FRAME.pack(kind, length) + payload,
                           st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=64))))
def test_read_frames_raises_only_stream_error(data):
    try:
        for kind, payload in read_frames(io.BytesIO(data)):
            if kind == RECORD:
                records.parse_record(payload)
    except (StreamError, ValueError) as e:
        one_line(e)


@pcapng_warnings
@fuzz("record")
@given(st.sampled_from(RECORDS), seeds, st.sampled_from([None, 0, 1_700_000_000 * 10**9, -2**40]))
def test_trees_of_damaged_records_view_and_export(payload, seed, realtime_offset_ns):
    """parse_record and assemble raise ValueError, or give a tree that every
    view and export takes."""
    raw = mutate_record(random.Random(seed), payload)
    try:
        rec = records.parse_record(raw)
        tree = Links().add(assemble(rec, {0xffffffff81000000: "rtnl_getlink"}.get))
    except ValueError as e:
        return one_line(e)
    capture = records.capture_of(rec)
    assert len(capture.data) <= records.C.NLT_MSG_CAPTURE     # never read past msg[]
    EveryFilter().match(tree)
    json_line(tree)
    message_text(tree)
    Console(file=io.StringIO(), width=120).print(render_tree(tree, 0))
    PcapngWriter(io.BytesIO(), realtime_offset_ns).add(tree, capture)
    PerfettoWriter(io.BytesIO()).add(tree, capture)


# The decoder's inputs: every protocol it names (and some it does not), the
# genl families it has tables for, and the captures of the recorded streams.
protocols = st.sampled_from(sorted(PROTOCOLS) + [0xffff, 3, 31]) | st.integers(0, 0xffff)
families = st.sampled_from([None, "nlctrl", "ethtool", "no_such_family"] + sorted(uapi.GENL_COMMANDS)) \
    | st.text(max_size=16)


def recorded_captures():
    """(data, protocol, genl family, skb length) of each message record of the recorded streams."""
    out = set()
    for payload in RECORDS:
        rec = records.parse_record(payload)
        if not rec.flags & records.C.NLT_REC_SOCKET:
            capture = records.capture_of(rec)
            out.add((capture.data, capture.protocol, records.ffi.string(rec.genl_family).decode() or None,
                     capture.length))
    return sorted(out, key=repr)


CAPTURES = recorded_captures()


def check_decoded(data, protocol, family, length):
    """decode_message and buffer_heads give JSON, and never raise. A message
    is truncated (the capture cut what the skb held whole) or malformed
    (the kernel took it for none), never both."""
    out = decode_message(data, protocol, family, length)
    assert out is None or isinstance(out, dict)
    heads = buffer_heads(data, protocol, family, length)
    assert isinstance(heads, list) and all(isinstance(h, dict) for h in heads)
    json_line({"message": out, "messages": heads})
    if out and out["truncated"]:
        assert "malformed" not in out and len(data) < out["len"]
        assert length is None or out["len"] <= length


lengths = st.none() | st.integers(0, 2**32 - 1)


@fuzz("decode_random")
@given(st.binary(max_size=300), protocols, families, lengths, st.integers(0, 2**64 - 1))
def test_decode_takes_any_bytes(data, protocol, family, length, head):
    check_decoded(data, protocol, family, length)
    json_line(message_head(protocol, head, family, head & 0xff if head & 0x100 else None))


def mutate_capture(rng, data):
    """A captured message with bits flipped, bytes or its nlmsg_len rewritten, cut or lengthened."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("flip", "bytes", "nlmsg_len", "cut", "append"))
        if op == "flip" and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == "bytes" and data:
            at = rng.randrange(len(data))
            data[at:at + 8] = rng.randbytes(min(8, len(data) - at))
        elif op == "nlmsg_len" and len(data) >= 4:
            data[0:4] = int_of(rng, 4) if rng.random() < 0.5 else struct.pack("=I", rng.randint(0, len(data) + 8))
        elif op == "cut":
            data = data[:rng.randint(0, len(data))]
        elif op == "append":
            data += rng.randbytes(rng.randint(0, 64))
    return bytes(data[:records.C.NLT_MSG_CAPTURE])


@fuzz("decode_real")
@given(st.sampled_from(CAPTURES), seeds, st.none() | protocols, st.none() | families, st.none() | lengths)
def test_decode_takes_damaged_real_messages(capture, seed, protocol, family, length):
    """A recorded message damaged, as its own protocol, family and skb length or others (None: the recorded one)."""
    data, recorded_protocol, recorded_family, recorded_length = capture
    check_decoded(mutate_capture(random.Random(seed), data), recorded_protocol if protocol is None else protocol,
                  recorded_family if family is None else family, recorded_length if length is None else length)


# Message types each protocol's decoder treats apart.
TYPES = {0: sorted(RTNL_CLASSES), 16: [16, 0x14, 0x15, 0x1d, 0x30],
         12: [0x10, 0x11, 10 << 8, 10 << 8 | 6, 1 << 8, 99 << 8 | 1], 4: [18, 19, 20, 21],
         6: list(range(16, 40)), 9: [1000, 1001, 1300]}
MESSAGE_PROTOCOLS = st.sampled_from(sorted(TYPES)) | protocols
MESSAGE_TYPES = {p: st.sampled_from(TYPES.get(p, [0]) + [1, 2, 3, 4]) | st.integers(0, 0xffff)
                 for p in list(TYPES) + [None]}
# The fixed header after the nlmsghdr (ifinfmsg, genlmsghdr, nfgenmsg, ...), so that the attributes are read as such.
FIXED_SIZES = {(0, t): struct.calcsize("=" + "".join(f[1] for f in cls.fields)) for t, cls in RTNL_CLASSES.items()}


def attribute_chain(rng, depth=2):
    """A chain of netlink attributes, their lengths mostly right, nested ones
    too (with NLA_F_NESTED or without)."""
    out = b""
    for _ in range(rng.randint(0, 6)):
        nla_type = rng.choice((rng.randint(0, 40), rng.getrandbits(16), rng.randint(0, 40) | 0x8000))
        if depth and rng.random() < 0.25:
            payload = attribute_chain(rng, depth - 1)
        else:
            payload = rng.randbytes(rng.choice((0, 1, 2, 4, 8, 16, rng.randint(0, 24))))
        length = 4 + len(payload) if rng.random() < 0.85 else rng.getrandbits(16)
        out += struct.pack("=HH", length, nla_type) + payload + bytes(-len(payload) % 4)
    return out


def message_of(rng, protocol, msg_type, flags):
    """An nlmsghdr (its nlmsg_len mostly right), a fixed header and attributes;
    sometimes a second message after it, as in a batch."""
    size = FIXED_SIZES.get((protocol, msg_type), 4 if protocol in (12, 16) else rng.randint(0, 28))
    fixed = bytearray(rng.randbytes(size if rng.random() < 0.8 else rng.randint(0, 28)))
    if protocol == 0 and fixed and rng.random() < 0.25:
        fixed[0] = AF_MCTP
    body = bytes(fixed) + attribute_chain(rng)
    length = 16 + len(body) if rng.random() < 0.7 else rng.choice((rng.randint(0, 40), rng.getrandbits(32)))
    data = struct.pack("=IHHII", length, msg_type, flags, rng.getrandbits(32), rng.getrandbits(32)) + body
    if rng.random() < 0.25:
        data += message_of(rng, protocol, rng.choice((msg_type, rng.getrandbits(16))), rng.getrandbits(16))
    return data


@st.composite
def built_message(draw):
    """(captured bytes, protocol, genl family, skb length): a message_of(), its
    capture cut at 256 bytes, its length the whole one's, or unknown, or any."""
    protocol = draw(MESSAGE_PROTOCOLS)
    msg_type = draw(MESSAGE_TYPES.get(protocol, MESSAGE_TYPES[None]))
    data = message_of(random.Random(draw(seeds)), protocol, msg_type, draw(st.integers(0, 0xffff)))
    length = draw(st.just(len(data)) | lengths)
    return data[:records.C.NLT_MSG_CAPTURE], protocol, draw(families), length


@fuzz("decode_built")
@given(built_message())
def test_decode_takes_headers_with_any_body(message):
    check_decoded(*message)
