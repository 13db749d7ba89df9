"""Views as other tools' files: pcapng for Wireshark, Perfetto traces, Prometheus metrics.

A tree writer (pcapng.PcapngWriter, perfetto.PerfettoWriter) takes what
`run.flow` hands a view, (tree, records.Capture), through add(), finishes
in close() and says what it wrote in summary(); Export gives it its file.
"""

from contextlib import contextmanager

from nltrace.errors import CannotWrite
from nltrace.output import close_output, open_output

TREE_FORMATS = ("pcapng", "perfetto")


class Export:
    """A tree writer of one format on a file (path "-": standard output);
    a failed write raises CannotWrite."""

    def __init__(self, fmt, path, realtime_offset_ns):
        self.path = path
        self.out = open_output(path)
        if fmt == "pcapng":
            from nltrace.exports.pcapng import PcapngWriter
            self.writer = PcapngWriter(self.out, realtime_offset_ns)
        else:
            from nltrace.exports.perfetto import PerfettoWriter
            self.writer = PerfettoWriter(self.out)
        self.fmt = fmt

    def _failed(self, e):
        return CannotWrite(f"writing {self.path} failed: {e.strerror or e}")

    def add(self, tree, capture):
        try:
            self.writer.add(tree, capture)
        except OSError as e:
            raise self._failed(e) from None

    def close(self):
        try:
            self.writer.close()
        except OSError as e:
            raise self._failed(e) from None
        finally:
            close_output(self.out, self.path)

    def summary(self):
        return f"{self.path} ({self.fmt}): {self.writer.summary()}"


@contextmanager
def open_exports(specs, realtime_offset_ns):
    """An Export per (format, path) of specs, each closed at the end."""
    opened = []
    try:
        for fmt, path in specs:
            opened.append(Export(fmt, path, realtime_offset_ns))
        yield opened
    finally:
        for export in opened:
            export.close()
