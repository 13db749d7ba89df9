"""nltrace latency on a real kernel: exact counts for a known workload, shown
and served to Prometheus, and the RTNL wait under contention made on purpose."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

from conftest import CLIENT
from harness.tracer import Tracer, nltrace


def client(*args):
    return [sys.executable, CLIENT, *args]


def run_latency_report(tracer):
    """Stop the tool and return its one report (no -i: it prints at the end)."""
    tracer.stop()
    assert tracer.proc.returncode == 0, tracer.stderr
    (report,) = tracer.stdout
    return report


def check_histogram(h):
    assert h["unit"] in ("ns", "us", "ms")
    assert sum(b["count"] for b in h["buckets"]) == h["count"]
    assert all(b["low"] <= b["high"] for b in h["buckets"])
    assert h["p50"] <= h["p90"] <= h["p99"] <= h["max"]
    assert h["max"] <= h["buckets"][-1]["high"]


def scrape_inf_counts(url, want, wait_s=60):
    """The +Inf bucket of each histogram on the metrics endpoint, as {key:
    count}, read until it equals want or wait_s passes; and the page."""
    deadline = time.monotonic() + wait_s
    while True:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        got = {}
        for labels, value in re.findall(r'^nltrace_message_duration_seconds_bucket\{(.*le="\+Inf".*)\} (\S+)$',
                                        text, re.M):
            parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            key = f"{parts['family']}/{parts['command']}" if "family" in parts else parts["type"]
            got[key] = int(float(value))
        if got == want or time.monotonic() > deadline:
            return got, text
        time.sleep(1)


@pytest.mark.kernels
def test_exact_counts_per_message_for_one_pid_shown_and_served():
    """The JSON reports (one per -i interval) and the Prometheus endpoint
    both count exactly what one pid sent."""
    n_getlink, n_getfamily = 7, 4
    want = {"RTM_GETLINK": n_getlink, "nlctrl/CTRL_CMD_GETFAMILY": n_getfamily}
    waiting = subprocess.Popen(client("--wait", "mix", "--getlink", str(n_getlink),
                                      "--getfamily", str(n_getfamily)),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    latency = Tracer(nltrace("latency", "--json", "-i", "1", "-p", str(waiting.pid), "--by", "message",
                             "--prometheus", "127.0.0.1:9464"))
    try:
        busy = [subprocess.run(["ip", "link", "show", "lo"], capture_output=True) for _ in range(3)]
        out, _ = waiting.communicate("go\n", timeout=300)
        assert len(out.splitlines()) == n_getlink + n_getfamily
        served, page = scrape_inf_counts("http://127.0.0.1:9464/metrics", want)
        # exactly what this pid sent; the `ip` commands around it are filtered out
        assert served == want, page
    finally:
        assert latency.stop() == 0, latency.stderr
    shown = Counter()
    for report in latency.stdout:
        assert report["by"] == "message"
        shown.update({h["key"]: h["count"] for h in report["histograms"]})
        for h in report["histograms"]:
            check_histogram(h)
    assert shown == want
    assert all(b.returncode == 0 for b in busy)


@contextlib.contextmanager
def rtnl_hog(tmp_path, links=200):
    """RTNL kept busy: 200 dummy links, made on entry, which start() sets down
    and up again and again (`ip link set group 7 down`: all of them under
    one hold). In a network namespace of its own: RTNL is global, but the
    links' uevents stay there (in the initial one, udev started a
    systemd-sysctl per new link, which piled up on the guest's 9p root until
    the guest stalled: a CI run ran out of time)."""
    setup, flaps, errors = tmp_path / "hog-links.batch", tmp_path / "hog-flaps.batch", tmp_path / "hog.err"
    setup.write_text("".join(f"link add nlhog{i} group 7 type dummy\n" for i in range(links)))
    flaps.write_text("link set group 7 down\nlink set group 7 up\n" * 500)
    hogs = []

    def start():
        # the loop ends if a flap fails: the test then says why, rather than seeing no wait
        with open(errors, "w") as err:
            hogs.append(subprocess.Popen(["bash", "-c", f"while ip -n nlhog -batch {flaps} >/dev/null; do :; done"],
                                         stderr=err, start_new_session=True))

    subprocess.run(["ip", "netns", "add", "nlhog"], check=True)
    try:
        subprocess.run(["ip", "-n", "nlhog", "-batch", str(setup)], check=True, timeout=300)
        yield start
        assert all(hog.poll() is None for hog in hogs), f"the RTNL hog stopped: {errors.read_text()}"
    finally:
        for hog in hogs:
            # the loop's group: killing bash alone would leave its `ip` flapping links under later tests
            os.killpg(hog.pid, signal.SIGKILL)
            hog.wait()
        subprocess.run(["ip", "netns", "del", "nlhog"], check=True)


def test_rtnl_wait_rises_under_contention(tmp_path):
    """Baseline: 20 RTM_GETSTATS alone. Then 100 RTM_GETLINK while a loop
    sets a group of links down and up, holding RTNL. Both take RTNL in their
    doit; some contended ones must wait longer than the baseline's slowest
    (only some of a client's waits meet a hold: 100 make one near certain)."""
    count, contended_count = 20, 100
    with rtnl_hog(tmp_path) as start_hog:
        latency = Tracer(nltrace("latency", "--json", "-c", "nlrtnl", "--by", "rtnl"))
        base = subprocess.run(client("--comm", "nlrtnl", "--count", str(count), "getstats", "--index", "1"),
                              capture_output=True, text=True, timeout=120)
        assert base.returncode == 0, base.stderr
        start_hog()
        contended = subprocess.run(client("--comm", "nlrtnl", "--count", str(contended_count), "getlink",
                                          "--index", "1"), capture_output=True, text=True, timeout=300)
    assert contended.returncode == 0, contended.stderr
    report = run_latency_report(latency)
    waits = {h["key"]: h for h in report["histograms"]}
    assert report["by"] == "rtnl"
    assert {"RTM_GETSTATS", "RTM_GETLINK"} <= set(waits), (json.dumps(report), base.stdout[-300:])
    assert waits["RTM_GETSTATS"]["count"] == count
    assert waits["RTM_GETLINK"]["count"] == contended_count
    for h in waits.values():
        check_histogram(h)
    baseline_top = max(b["high"] for b in waits["RTM_GETSTATS"]["buckets"])
    above = sum(b["count"] for b in waits["RTM_GETLINK"]["buckets"] if b["low"] > baseline_top)
    assert above > 0, json.dumps(waits)
    assert waits["RTM_GETLINK"]["max"] > waits["RTM_GETSTATS"]["max"]


def test_functions_time_only_what_they_name_wherever_it_runs():
    """--functions: only the named functions' histograms, from only the probes
    they need. rtnetlink_rcv_msg and netlink_rcv_skb count exactly the
    client's 30 RTM_GETLINK; netlink_dump, whose later batches run in the
    reader's netlink_recvmsg, counts as many calls as --by function with
    every probe attached, in 5 dumps of 40 links. Not in the matrix: what it
    adds is the choice of probes, the same on every kernel (it passed on 5.10
    and 6.12 by hand; three compiles take 5 minutes on 5.10)."""
    count, dumps = 30, 5
    subprocess.run(["ip", "netns", "add", "nlfn"], check=True)
    try:
        # a namespace of its own: no uevents in the initial one (rtnl_hog says why)
        subprocess.run(["ip", "-n", "nlfn", "-batch", "-"], check=True, text=True, timeout=300,
                       input="".join(f"link add nlfn{i} type dummy\n" for i in range(40)))
        named = Tracer(nltrace("latency", "--json", "--by", "function", "-c", "nlfn",
                               "--functions", "rtnetlink_rcv_msg,netlink_rcv_skb"))
        dump_only = Tracer(nltrace("latency", "--json", "--by", "function", "-c", "ip", "--functions", "netlink_dump"))
        every = Tracer(nltrace("latency", "--json", "--by", "function", "-c", "ip"))
        sent = subprocess.run(client("--comm", "nlfn", "--count", str(count), "getlink", "--index", "1"),
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        for _ in range(dumps):
            subprocess.run(["ip", "-n", "nlfn", "link", "show"], check=True, capture_output=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", "nlfn"], check=True)
    assert set(named.ready["attached"]) == {"netlink_sendmsg", "rtnetlink_rcv_msg", "netlink_rcv_skb"}
    assert set(dump_only.ready["attached"]) == {"netlink_sendmsg", "netlink_recvmsg", "netlink_dump"}
    reports = [run_latency_report(tracer) for tracer in (named, dump_only, every)]
    counts = [{h["key"]: h["count"] for h in report["histograms"]} for report in reports]
    assert counts[0] == {"rtnetlink_rcv_msg": count, "netlink_rcv_skb": count}, counts
    assert list(counts[1]) == ["netlink_dump"]
    # more calls than dumps: some batches were made in the reader's netlink_recvmsg
    assert counts[1]["netlink_dump"] == counts[2]["netlink_dump"] > dumps, counts
    for report in reports:
        for h in report["histograms"]:
            check_histogram(h)
