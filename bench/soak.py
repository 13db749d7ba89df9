"""make soak: `nltrace flow` and `nltrace latency` attached together while
nlload sends requests at full rate, for as long as asked: each tool's
resident memory sampled, every request's tree shown or counted lost, and
latency's count equal to the requests sent.

Runs on a kernel with kprobes (inside the test VM: `make soak`, 10 minutes);
tests/vm/test_soak.py runs its short form. Prints one JSON object and, with
--markdown FILE, writes the figures as a table.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from harness.tracer import Tracer, nltrace  # noqa: E402

SAMPLE_S = 10           # one nlload run and one memory sample each
SUMMARY = re.compile(r"nltrace: (\d+) trees shown, (\d+) lost")


class SendCounter:
    """flow --json's lines, counted and discarded: nlload's sendmsg trees."""

    def __init__(self):
        self.sends = 0

    def __call__(self, line):
        if '"root":{"func":"netlink_sendmsg"' in line:
            self.sends += 1


def memory_kb(pid, tool):
    """The tool's resident memory, whole and by kind: anonymous (its heap),
    file-backed (libraries, and mappings such as the BPF ring buffer's) and
    shared memory (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return {f"{tool}{suffix}_kb": int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))
            for field, suffix in (("VmRSS", ""), ("RssAnon", "_anon"), ("RssFile", "_file"), ("RssShmem", "_shmem"))}


def soak(nlload, duration_s, warmup_s):
    """Runs the soak; its figures as a dict."""
    counter = SendCounter()
    flow = Tracer(nltrace("flow", "--json", "-c", "nlload"), parse=counter)
    latency = Tracer(nltrace("latency", "--json", "-c", "nlload", "--by", "message"))
    samples, sent, started = [], 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            run = subprocess.run([nlload, "get", "--duration", str(min(SAMPLE_S, duration_s - elapsed))],
                                 capture_output=True, text=True, check=True)
            sent += json.loads(run.stdout)["requests"]
            samples.append({"s": round(time.monotonic() - started, 1), **memory_kb(flow.proc.pid, "flow"),
                            **memory_kb(latency.proc.pid, "latency")})
    finally:
        flow_status, latency_status = flow.stop(), latency.stop()
    if flow_status or latency_status:
        raise SystemExit(f"soak: flow exited {flow_status}, latency {latency_status}: "
                         f"{flow.stderr[-5:]} {latency.stderr[-5:]}")
    summary = [m for m in map(SUMMARY.search, flow.stderr) if m]
    counts = {h["key"]: h["count"] for h in latency.stdout[-1]["histograms"]}
    warm = [s for s in samples if s["s"] >= warmup_s] or samples[-1:]
    return {"duration_s": round(time.monotonic() - started, 1), "requests": sent,
            "flow_sends_shown": counter.sends, "flow_lost": int(summary[-1].group(2)) if summary else None,
            "latency_count": counts.get("RTM_GETLINK", 0),
            "growth_kb": {tool: warm[-1][f"{tool}_kb"] - warm[0][f"{tool}_kb"] for tool in ("flow", "latency")},
            "samples": samples}


def markdown(result, kernel):
    growth = result["growth_kb"]
    first, last = result["samples"][0], result["samples"][-1]
    return "\n".join([
        f"# Soak: `make soak` on {kernel}", "",
        f"nlload `get` at full rate for {result['duration_s']:.0f} s with `flow --json -c nlload` and "
        f"`latency -c nlload` attached together: {result['requests']} requests.", "",
        "| | flow | latency |", "| --- | --- | --- |",
        f"| trees shown / counted | {result['flow_sends_shown']} shown, {result['flow_lost']} lost | "
        f"{result['latency_count']} counted |",
        f"| resident memory, first sample → last | {first['flow_kb']} → {last['flow_kb']} kB | "
        f"{first['latency_kb']} → {last['latency_kb']} kB |",
        f"| growth after warm-up | {growth['flow']} kB | {growth['latency']} kB |", ""])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nlload", default=os.path.join(ROOT, ".cache", "bench", "nlload"))
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before memory growth counts")
    parser.add_argument("--markdown", help="write the figures as a table to this file")
    args = parser.parse_args()
    result = soak(args.nlload, args.duration, args.warmup)
    print(json.dumps(result))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(result, os.uname().release))


if __name__ == "__main__":
    main()
