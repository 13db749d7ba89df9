"""`nltrace latency` as Prometheus/OpenMetrics histograms: cumulative, served over HTTP or written for node-exporter."""

# What is exported, and why:
#
# - Classic histograms whose `le` bounds are the kernel's log2 bucket upper
#   bounds, 2^(k+1)-1 ns, in seconds. Durations are whole ns, so every count at
#   such a bound is exact, not an estimate; and since classic buckets are
#   cumulative, keeping only some slots' bounds (SLOTS) loses resolution at the
#   ends, never accuracy.
# - No `_sum`: the kernel keeps bucket counts and a max, no sum of durations,
#   and a sum made up from the buckets would be a guess. OpenMetrics allows
#   `_count` only beside `_sum` (prometheus_client's own parser refuses a
#   `_count` alone), so there is no `_count` either, as prometheus_client's
#   HistogramMetricFamily does without a sum: the count is
#   `_bucket{le="+Inf"}`. histogram_quantile() and rate() of the buckets work
#   as usual; a mean (rate(_sum)/rate(_count)) cannot be had.
# - No native histogram. Prometheus 2.42 (Debian 12) ingests native
#   histograms only from the protobuf exposition (with
#   --enable-feature=native-histograms), which prometheus_client does not
#   write; prometheus_client writes them only in its experimental OpenMetrics
#   2.0 text, which that Prometheus neither asks for nor reads. They would not
#   match the log2 buckets either: schema 0's buckets are (2^(i-1), 2^i] of the
#   unit, upper bound included, where the kernel's slot k is [2^k, 2^(k+1)),
#   lower bound included. In seconds the bounds have nothing in common, and
#   even in ns a duration of exactly 2^k ns is in slot k but in native bucket
#   k, not k+1, so the counts cannot be put into native buckets without a lie
#   (and a native histogram needs the sum we lack). Prometheus 3 can store
#   these classic histograms as native histograms with custom buckets (scrape
#   option convert_classic_histograms_to_nhcb): native, with exactly the log2
#   bounds.

import re
import threading

from prometheus_client import CollectorRegistry, generate_latest, start_http_server, write_to_textfile
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from nltrace.errors import BadFilter, CannotWrite
from nltrace.histograms import bucket_bounds

# --by -> metric name (unit suffix included), help, the labels its series may
# carry (a label that does not apply to a series is left out, e.g. `type` of a
# generic netlink message, whose type is its family).
_MESSAGE_LABELS = ("protocol", "type", "family", "command")
FAMILIES = {
    "function": ("nltrace_function_duration_seconds",
                 "Duration of each call of a netlink kernel function, by function (nltrace latency --by function).",
                 ("function",)),
    "message": ("nltrace_message_duration_seconds",
                "Duration of netlink_sendmsg, by message type; generic netlink by family and command "
                "(nltrace latency --by message).",
                _MESSAGE_LABELS),
    "process": ("nltrace_process_message_duration_seconds",
                "Duration of netlink_sendmsg, by sending process's comm (nltrace latency --by process).",
                ("comm",)),
    "rtnl": ("nltrace_rtnl_wait_seconds",
             "Wait for the RTNL mutex in a message's doit handler, by message type (nltrace latency --by rtnl).",
             _MESSAGE_LABELS),
}
# The label a Histogram without labels (not made by histograms.group) is keyed by.
_KEY_LABEL = {"function": "function", "message": "type", "process": "comm", "rtnl": "type"}

# Slots whose upper bound is a bucket: 255 ns .. 2^35-1 ns (34.4 s). Faster
# calls count in the first bucket, slower ones only in +Inf. A fixed set, so
# that every series has the same buckets from its first scrape on (a bucket
# series appearing later would lose its first counts to rate()).
SLOTS = range(7, 35)
# How often --prometheus/--prometheus-textfile refresh without -i: Prometheus's usual scrape interval.
METRICS_INTERVAL = 15.0
# Above this slot, a bound in float seconds no longer names 2^(k+1)-1 ns exactly.
MAX_SLOT = 50

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def le_of(slot):
    """The `le` of slot's bucket: its upper bound (2^(slot+1)-1 ns) in seconds, as Prometheus writes it."""
    return floatToGoString(bucket_bounds(slot)[1] / 1e9)


class LatencyMetrics(Collector):
    """The histograms of one `nltrace latency --by by` run, cumulated since
    this object was made, in its own CollectorRegistry (`registry`).

    update(ts_ns, histograms) takes each interval's counts as run.latency
    hands them to show(); it can be that show(). const_labels are added to
    every series: for what the scraper cannot know itself, e.g. the board a
    stream read with --input comes from. instance/job are the scraper's."""

    def __init__(self, by, const_labels=None, slots=SLOTS):
        self.by = by
        self.name, self.help, own = FAMILIES[by]
        self.const_labels = dict(const_labels or {})
        for name in self.const_labels:
            if not _LABEL_NAME.match(name) or name.startswith("__") or name == "le" or name in own:
                raise ValueError(f"{name!r} cannot be a constant label: it must match [a-zA-Z_][a-zA-Z0-9_]*, "
                                 f"not begin with __, and not be le or one of {', '.join(own)}")
        self.slots = sorted(set(slots))
        if not self.slots or self.slots[0] < 0 or self.slots[-1] > MAX_SLOT:
            raise ValueError(f"bucket slots must be within 0..{MAX_SLOT}")
        self._le = [(slot, le_of(slot)) for slot in self.slots]
        self._lock = threading.Lock()   # update() runs beside the HTTP server's collect()
        self._series = {}   # sorted label items -> {slot: count since start}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def update(self, ts_ns, histograms):
        """Add one interval's counts (deltas). ts_ns is not exported: Prometheus stamps samples at scrape time."""
        with self._lock:
            for h in histograms:
                labels = tuple(sorted((h.labels or {_KEY_LABEL[self.by]: h.key}).items()))
                buckets = self._series.setdefault(labels, {})
                for slot, n in h.buckets.items():
                    buckets[slot] = buckets.get(slot, 0) + n

    def _family(self):
        return HistogramMetricFamily(self.name, self.help, unit="seconds")

    def describe(self):
        """The family without samples, for the registry to know its name."""
        return [self._family()]

    def collect(self):
        with self._lock:
            series = [(labels, dict(buckets)) for labels, buckets in self._series.items()]
        family = self._family()
        for labels, buckets in sorted(series):
            labels = {**self.const_labels, **dict(labels)}
            for slot, le in self._le:
                below = sum(n for s, n in buckets.items() if s <= slot)
                family.add_sample(self.name + "_bucket", {**labels, "le": le}, below)
            family.add_sample(self.name + "_bucket", {**labels, "le": "+Inf"}, sum(buckets.values()))
        yield family

    def text(self):
        """The Prometheus text format (0.0.4), as bytes."""
        return generate_latest(self.registry)

    def serve(self, port, addr="0.0.0.0"):
        """Serve the metrics on addr:port from a daemon thread (text format, or
        OpenMetrics 1.0 to a scraper that asks for it). Returns the server:
        server.server_port is the port bound (port 0: one the kernel picked),
        server.shutdown() stops it. Needs prometheus-client >= 0.20."""
        server, _thread = start_http_server(port, addr, registry=self.registry)
        return server

    def write_textfile(self, path):
        """Write the text format to path for node-exporter's textfile
        collector (which reads *.prom): to a temporary file beside it, then
        renamed over it, so a scrape never reads half a file."""
        write_to_textfile(path, self.registry)


class MetricsExport:
    """`nltrace latency --prometheus [ADDR:]PORT --prometheus-textfile FILE
    --label NAME=VALUE`: LatencyMetrics served, written, or both. Raises
    BadFilter for a malformed option, CannotWrite when the port or file
    cannot be had."""

    def __init__(self, by, labels, listen, textfile):
        pairs = [label.partition("=") for label in labels]
        if any(not name or not sep for name, sep, _ in pairs):
            raise BadFilter("--label wants NAME=VALUE")
        try:
            self.metrics = LatencyMetrics(by, {name: value for name, _, value in pairs})
        except ValueError as e:
            raise BadFilter(f"--label: {e}") from None
        self.textfile = textfile
        self.server = None
        if listen:
            addr, _, port = listen.rpartition(":")
            if not port.isdigit() or int(port) > 65535:
                raise BadFilter(f"--prometheus wants [ADDR:]PORT, not {listen!r}")
            try:
                self.server = self.metrics.serve(int(port), addr.strip("[]") or "0.0.0.0")
            except OSError as e:
                raise CannotWrite(f"cannot serve metrics on {listen}: {e.strerror}") from None

    def update(self, ts_ns, histograms):
        self.metrics.update(ts_ns, histograms)
        if self.textfile:
            try:
                self.metrics.write_textfile(self.textfile)
            except OSError as e:
                raise CannotWrite(f"cannot write {self.textfile}: {e.strerror}") from None

    def close(self):
        if self.server:
            self.server.shutdown()
