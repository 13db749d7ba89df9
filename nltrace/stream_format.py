"""The nltrace stream: raw kernel records in a file or pipe, to read later or elsewhere.

Written by `nltrace record` and by nltrace-agent (nltrace/agent/stream.c);
records.h defines the frames for both. Layout (little-endian):
    magic   b"NLTRACE\\0"
    frames  struct nlt_frame (kind:u8, 3 pad bytes, length:u32), payload[length]
The first frame is HEADER: JSON naming the format version, arch, pointer
size, endianness, kernel release, probe set, clock, record layout sizes and
mode (flow or latency). RECORD frames hold one struct nlt_record each,
SYMBOLS frames a JSON object {"0xaddr": "name"} for addresses records refer
to, HISTOGRAMS the latency maps at one moment, COUNTERS a JSON object of the
kernel-side counters at the end of the capture.
"""

import json
import struct

from nltrace import records
from nltrace.errors import CannotWrite

MAGIC = b"NLTRACE\0"
FRAME = struct.Struct("<B3xI")
assert FRAME.size == records.ffi.sizeof("struct nlt_frame")
HEADER, RECORD, SYMBOLS, COUNTERS, HISTOGRAMS = (
    records.C.NLT_FRAME_HEADER, records.C.NLT_FRAME_RECORD, records.C.NLT_FRAME_SYMBOLS,
    records.C.NLT_FRAME_COUNTERS, records.C.NLT_FRAME_HISTOGRAMS)
JSON_FRAMES = (SYMBOLS, COUNTERS)
JSON_FRAME_NAMES = {SYMBOLS: "symbols", COUNTERS: "counters"}
MAX_FRAME = 1 << 24
MODES = ("flow", "latency")     # what the header's "mode" may say


class StreamError(Exception):
    """The input is not an nltrace stream, or is cut short or corrupt."""


class StreamWriter:
    """Frames onto out (a binary file). A failed write (a full disk) raises
    CannotWrite; the frames before it stay whole, for a reader to stop at."""

    def __init__(self, out, meta):
        self.out = out
        self._write(MAGIC)
        self._frame(HEADER, json.dumps(dict(meta, version=records.C.NLT_STREAM_VERSION,
                                            record_size=records.RECORD_SIZE,
                                            node_size=records.NODE_SIZE)).encode())

    def _write(self, data, flush=False):
        try:
            self.out.write(data)
            if flush:
                self.out.flush()
        except OSError as e:
            raise CannotWrite(f"writing the stream failed: {e.strerror or e}") from None

    def _frame(self, kind, payload):
        self._write(FRAME.pack(kind, len(payload)) + payload)

    def record(self, data):
        self._frame(RECORD, data)

    def symbols(self, mapping):
        self._frame(SYMBOLS, json.dumps({hex(a): n for a, n in mapping.items()}).encode())

    def counters(self, counts):
        self._frame(COUNTERS, json.dumps(counts).encode())
        self._write(b"", flush=True)


def _read_exact(inp, n, what):
    data = inp.read(n)
    if len(data) != n:
        raise StreamError(f"stream ends inside {what} ({len(data)} of {n} bytes)")
    return data


def read_frames(inp):
    """Yield (kind, payload) from a binary file object; the HEADER frame first,
    already parsed into a dict. Raises StreamError on anything malformed."""
    magic = inp.read(len(MAGIC))
    if magic != MAGIC:
        raise StreamError("not an nltrace stream (bad magic); expected the output of "
                          "`nltrace record` or nltrace-agent")
    kind, length = FRAME.unpack(_read_exact(inp, FRAME.size, "the header frame"))
    if kind != HEADER or length > MAX_FRAME:
        raise StreamError("stream has no header frame")
    try:
        header = json.loads(_read_exact(inp, length, "the header"))
    except ValueError as e:
        raise StreamError(f"stream header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise StreamError("stream header is not a JSON object")
    if header.get("version") != records.C.NLT_STREAM_VERSION:
        raise StreamError(f"stream format version {header.get('version')!r} is not the "
                          f"supported {records.C.NLT_STREAM_VERSION}")
    if header.get("record_size") != records.RECORD_SIZE or header.get("node_size") != records.NODE_SIZE:
        raise StreamError("stream record layout differs from this nltrace's records.h")
    if header.get("endianness", "little") != "little":
        raise StreamError("stream is big-endian; nltrace reads little-endian streams only")
    if header.get("mode", "flow") not in MODES:
        raise StreamError(f"stream mode {header.get('mode')!r} is neither of {', '.join(MODES)}")
    if type(header.get("realtime_offset_ns", 0)) not in (int, type(None)):     # bool is no int here
        raise StreamError("stream header's realtime_offset_ns is not a number of nanoseconds")
    yield HEADER, header
    while True:
        head = inp.read(FRAME.size)
        if not head:
            return
        if len(head) != FRAME.size:
            raise StreamError("stream ends inside a frame header")
        kind, length = FRAME.unpack(head)
        if kind not in (RECORD, HISTOGRAMS) + JSON_FRAMES or length > MAX_FRAME:
            raise StreamError(f"corrupt frame (kind {kind}, length {length})")
        payload = _read_exact(inp, length, "a frame")
        if kind == RECORD:
            yield kind, payload
            continue
        if kind == HISTOGRAMS:
            try:
                yield kind, records.parse_histograms(payload)
            except ValueError as e:
                raise StreamError(f"corrupt histograms frame: {e}") from None
            continue
        try:
            value = json.loads(payload)
        except ValueError as e:
            raise StreamError(f"corrupt frame payload: {e}") from None
        if not _valid_json_frame(kind, value):
            raise StreamError(f"corrupt {JSON_FRAME_NAMES[kind]} frame: not the JSON object it should be")
        yield kind, value


def _valid_json_frame(kind, value):
    """SYMBOLS: {"0xaddr": "name"}, names that UTF-8 can write out; COUNTERS: {"name": count}."""
    if not isinstance(value, dict):
        return False
    if kind == COUNTERS:
        return True
    try:
        for addr, name in value.items():
            if not isinstance(name, str) or int(addr, 16) < 0:
                return False
            name.encode()     # JSON's "\ud800" makes a lone surrogate, which no output takes
    except ValueError:        # int() of no hex number, or UnicodeEncodeError
        return False
    return True
