"""The Prometheus export on a real kernel: `latency --prometheus` scraped during a known workload."""

import re
import subprocess
import sys
import time
import urllib.request

from conftest import CLIENT
from harness.tracer import Tracer, nltrace


def test_prometheus_during_a_known_workload():
    n_getlink, n_getfamily = 7, 4
    waiting = subprocess.Popen([sys.executable, CLIENT, "--wait", "mix", "--getlink", str(n_getlink),
                                "--getfamily", str(n_getfamily)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    latency = Tracer(nltrace("latency", "--json", "-i", "1", "-p", str(waiting.pid), "--by", "message",
                             "--prometheus", "127.0.0.1:9464"))
    try:
        waiting.communicate("go\n", timeout=300)
        want = {"RTM_GETLINK": n_getlink, "nlctrl/CTRL_CMD_GETFAMILY": n_getfamily}
        deadline = time.monotonic() + 60
        while True:
            text = urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=10).read().decode()
            got = {}
            for labels, value in re.findall(r'^nltrace_message_duration_seconds_bucket\{(.*le="\+Inf".*)\} (\S+)$',
                                            text, re.M):
                parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                key = f"{parts['family']}/{parts['command']}" if "family" in parts else parts["type"]
                got[key] = int(float(value))
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert got == want, text
    finally:
        assert latency.stop() == 0, latency.stderr
    shown = {}
    for report in latency.stdout:
        for h in report["histograms"]:
            shown[h["key"]] = shown.get(h["key"], 0) + h["count"]
    assert shown == want
