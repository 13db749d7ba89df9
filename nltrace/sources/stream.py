"""The recorded source: records or histograms read back from an nltrace stream
(a file, or - for stdin) written by `nltrace record` or nltrace-agent."""

import sys

from nltrace.errors import BadInput
from nltrace.sources import Snapshot
from nltrace.stream_format import COUNTERS, HISTOGRAMS, RECORD, SYMBOLS, StreamError, read_frames


class StreamSource:
    """A Source (sources/__init__.py) over a stream. Raises BadInput for a
    stream that cannot be read, with the path in the message."""

    def __init__(self, path, mode, file=None):
        """mode: the command reading it; a stream of the other mode is refused.
        file: read from this open file instead, path only naming it."""
        self.path = path
        try:
            self.file = file or (sys.stdin.buffer if path == "-" else open(path, "rb"))
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror}") from None
        self._frames = read_frames(self.file)
        self.frames_read = 0
        self.meta = self._next_frame()[1]
        self.mode = self.meta.get("mode", "flow")
        self.realtime_offset_ns = self.meta.get("realtime_offset_ns")
        self._symbols = {}
        self._counters = {}
        if self.mode != mode:
            self.close()
            raise BadInput(f"{path} holds a {self.mode} stream: read it with nltrace {self.mode} --input")

    def _next_frame(self):
        try:
            frame = next(self._frames)
        except StreamError as e:
            raise BadInput(f"{self.path}: {e}, after {self.frames_read} whole frames") from None
        self.frames_read += 1
        return frame

    def _payloads(self, wanted):
        while True:
            try:
                kind, payload = self._next_frame()
            except StopIteration:
                return
            if kind == wanted:
                yield payload
            elif kind == SYMBOLS:
                self._symbols.update({int(a, 16): n for a, n in payload.items()})
            elif kind == COUNTERS:
                self._counters = payload

    def records(self):
        return self._payloads(RECORD)

    def drain(self):
        return ()   # records() already read to the end

    def discard(self):
        return 0

    def histograms(self, interval=None):
        """One Snapshot per HISTOGRAMS frame; the agent chose the intervals."""
        return (Snapshot(*payload) for payload in self._payloads(HISTOGRAMS))

    def final_histograms(self):
        return None

    def counters(self):
        return self._counters

    def symbolize(self, addr):
        return self._symbols.get(addr)

    def close(self):
        if self.file is not sys.stdin.buffer:
            self.file.close()
