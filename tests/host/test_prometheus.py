"""The Prometheus exporter on the recorded ARM latency stream: the kernel's counts over text, HTTP and textfile."""

import functools
import os
import shutil
import subprocess
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from conftest import AGENT_LATENCY_STREAM, FIXTURES
from nltrace import records, run
from nltrace.exports.prometheus import FAMILIES, SLOTS, LatencyMetrics
from nltrace.histograms import Histogram, key_labels
from nltrace.sources.stream import StreamSource

LATENCY = AGENT_LATENCY_STREAM
BOARD = {"board": "raspi1ap"}
PROMTOOL = os.path.join(os.path.dirname(FIXTURES), "..", ".cache", "promtool", "usr", "bin", "promtool")


@functools.lru_cache(maxsize=None)
def snapshots(by):
    """What run.latency shows for the fixture: [(ts_ns, [Histogram])], each interval's counts."""
    shown = []
    run.latency(StreamSource(LATENCY, "latency"), by, None, None, lambda ts, hs: shown.append((ts, hs)))
    return tuple(shown)


def fed(by, times=1, **kw):
    metrics = LatencyMetrics(by, BOARD, **kw)
    for _ in range(times):
        for ts, histograms in snapshots(by):
            metrics.update(ts, histograms)
    return metrics


def expected(by, times=1):
    """{labels: {slot: count}} summed from the fixture's Histograms."""
    out = {}
    for _ts, histograms in snapshots(by):
        for h in histograms:
            buckets = out.setdefault(tuple(sorted({**BOARD, **h.labels}.items())), {})
            for slot, n in h.buckets.items():
                buckets[slot] = buckets.get(slot, 0) + n * times
    return out


def series(families, by):
    """Parsed families -> {labels without le: [(le, value)]} of by's metric, in order."""
    name = FAMILIES[by][0]
    [family] = [f for f in families if f.name == name]
    assert family.type == "histogram"
    out = {}
    for s in family.samples:
        assert s.name == name + "_bucket", s   # no _sum (there is none) and so no _count
        labels = dict(s.labels)
        le = labels.pop("le")
        out.setdefault(tuple(sorted(labels.items())), []).append((le, s.value))
    return out


def check(families, by, times=1):
    want = expected(by, times)
    got = series(families, by)
    assert set(got) == set(want) and want
    for labels, buckets in got.items():
        counts = want[labels]
        assert buckets[-1][0] == "+Inf"
        for (le, value), slot in zip(buckets, SLOTS):
            # le is the slot's upper bound to the ns, 2^(k+1)-1, and holds every count up to that slot
            assert Decimal(le) * 10**9 == (1 << (slot + 1)) - 1
            assert value == sum(n for s, n in counts.items() if s <= slot)
        values = [v for _, v in buckets]
        assert values == sorted(values)
        assert len(buckets) == len(SLOTS) + 1 and values[-1] == sum(counts.values())
    return got


@pytest.mark.parametrize("by", ["message", "function", "process"])
def test_text_format_holds_the_kernels_counts(by):
    check(list(parse_text(fed(by).text().decode())), by)


def test_labels_are_the_keys_parts():
    got = series(parse_text(fed("message").text().decode()), "message")
    assert list(got) == [(("board", "raspi1ap"), ("protocol", "NETLINK_ROUTE"), ("type", "RTM_GETLINK"))]
    assert dict(list(got.values())[0])["+Inf"] == 7   # tests/fixtures/README.md: 7 RTM_GETLINK
    got = series(parse_text(fed("process").text().decode()), "process")
    assert list(got) == [(("board", "raspi1ap"), ("comm", "nlload"))]
    functions = {dict(labels)["function"] for labels in series(parse_text(fed("function").text().decode()), "function")}
    assert {"netlink_sendmsg", "rtnetlink_rcv_msg"} <= functions
    # generic netlink: the family and the command (what the flow fixture's nlctrl requests are)
    assert key_labels(0, 16, 16, 3, "nlctrl", records.C.NLT_HIST_MESSAGE) == \
        {"protocol": "NETLINK_GENERIC", "family": "nlctrl", "command": "CTRL_CMD_GETFAMILY"}


def test_a_family_without_series_is_still_described():
    families = list(parse_text(fed("rtnl").text().decode()))   # nlload's RTM_GETLINK take no RTNL
    assert [(f.name, f.type, f.samples) for f in families] == [("nltrace_rtnl_wait_seconds", "histogram", [])]


def test_http_text_and_openmetrics():
    metrics = fed("function")
    server = metrics.serve(0, "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/plain"}), timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            check(list(parse_text(r.read().decode())), "function")
        om = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(om, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            text = r.read().decode()
        assert text.endswith("# EOF\n") and "# UNIT nltrace_function_duration_seconds seconds\n" in text
        families = list(parse_openmetrics(text))   # the strict parser: _count without _sum would fail here
        assert [f.unit for f in families] == ["seconds"]
        check(families, "function")
    finally:
        server.shutdown()
        server.server_close()


def test_textfile_is_replaced_whole(tmp_path):
    path = tmp_path / "nltrace.prom"
    metrics = fed("message")
    metrics.write_textfile(str(path))
    first = os.stat(path).st_ino
    check(list(parse_text(path.read_text())), "message")
    for ts, histograms in snapshots("message"):
        metrics.update(ts, histograms)
    metrics.write_textfile(str(path))
    # renamed over the old file, not rewritten in place, and no temporary left beside it
    assert os.stat(path).st_ino != first and os.listdir(tmp_path) == ["nltrace.prom"]
    check(list(parse_text(path.read_text())), "message", times=2)


def test_promtool_accepts_it():
    # make install unpacks Debian's prometheus package, for its promtool: missing, it is a failure
    promtool = PROMTOOL if os.path.exists(PROMTOOL) else shutil.which("promtool")
    assert promtool, f"promtool not found at {PROMTOOL}: make install puts it there"
    for by in ("function", "message", "rtnl"):
        out = subprocess.run([promtool, "check", "metrics"], input=fed(by).text(), capture_output=True, timeout=60)
        assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (by, out)


def test_updates_add_up():
    check(list(parse_text(fed("function", times=2).text().decode())), "function", times=2)


def test_buckets_outside_the_slots():
    # pure bucket math: faster than the first bound counts in the first bucket, slower than the last only in +Inf
    metrics = LatencyMetrics("process", slots=range(10, 12))
    metrics.update(0, [Histogram("a", {0: 1, 9: 2, 10: 4, 11: 8, 12: 16, 63: 32}, labels={"comm": "a"})])
    metrics.update(1, [Histogram("a", {10: 1}, labels={"comm": "a"})])
    got = series(parse_text(metrics.text().decode()), "process")
    assert got == {(("comm", "a"),): [("2.047e-06", 8.0), ("4.095e-06", 16.0), ("+Inf", 64.0)]}


@pytest.mark.parametrize("name", ["le", "type", "__meta", "1x", "a-b"])
def test_constant_labels_must_not_clash(name):
    with pytest.raises(ValueError, match="cannot be a constant label"):
        LatencyMetrics("message", {name: "x"})
