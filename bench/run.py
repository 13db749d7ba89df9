#!/usr/bin/env python3
"""The overhead bench: netlink requests per second, traced over untraced.

Runs on a kernel with kprobes, as root (`make bench` runs it inside the test
VM). For each tracer it alternates untraced (B) and traced (T) windows,
B T B T B T B, each window running every load mode (bench/nlload.c: get,
dump, genl) for --window seconds. A T window's ratio is its rate over the
mean of the two B windows around it; the table gives the median ratio of
the rounds and their min and max.

The tracers (started once per T window, so each start is also timed):
  flow      nltrace flow --json, its output read and discarded
  flow-snaplen16  the same capturing 16 bytes of each message, not 256:
            what the capture costs
  flow-agent, latency-agent  the same with --agent: nltrace-agent, built
            for this kernel at the start (nltrace build --target x86_64),
            loads the programs with libbpf instead of BCC (kprobes only)
  latency   nltrace latency (by message, the default): log2 histograms
            kept in the kernel, printed at the end
  latency-functions  nltrace latency --by function --functions naming the
            five functions bench/netlink-hist.bt times: the same work
  bpftrace-kfunc  bench/netlink-hist.bt on BPF trampolines (kfunc and
            kretfunc): bpftrace's best configuration where the kernel has them
  bpftrace  bench/netlink-hist.bt: kprobe + kretprobe on the five functions
            netlink_sendmsg, netlink_unicast, netlink_rcv_skb,
            rtnetlink_rcv_msg, genl_rcv_msg, with per-function histograms

An event is one probe hit: every traced call that a tracer accounts for is
two hits (entry and return). flow accounts for the nodes of the trees it
printed for nlload; latency for its per-function histogram counts (kept whatever
--by shows), bpftrace for its histogram counts. Counts are taken
at the end of each T window: flow's from its output once a marker request's tree
came through (`ip link show lo`: the ring buffer keeps commit order),
latency's from its histogram map (bpftool), bpftrace's from the maps it
prints on SIGUSR1. Lost: flow's kernel counter of records the ring buffer
had no room for (bpftool, per window; in trees, not events); bpftrace's
"Lost N events" (it has no stream here, so none expected); latency streams
nothing and cannot lose.

Catch-up (flow) is the time from a window's end until flow had printed every
tree of it: during a burst flow decodes only a small share of the time and
lets the ring buffer hold the rest (nltrace/sources/pacing.py).

Kernel cost: after its last T window each tracer runs one more window per
mode with the kernel's BPF run-time statistics on (kernel.bpf_stats_enabled:
they add two clock reads to every program run, so the ratio windows run
without them): the time its programs ran, per request, summed over every
tracing program loaded. Unlike the ratio it does not move with the VM's
speed from row to row, and it leaves out what the probes cost around the
programs (trampolines, kprobes) and the tracer's user space.

Startup is the time from starting the tracer until it is attached: nltrace's
--ready-file appears (written once every probe is attached); bpftrace, which
has no such option, prints a Tracing line from its BEGIN probe.

Then the growth table, the same way for --growth-tracers with their own
modes: how cost grows with the work per message: get with 1, 10 and 100
requests per sendmsg, get from 1 and 2 concurrent senders, and dumps of 10,
100 and 1000 links (each in a network namespace of its own, created for the
run).

The tracers run through tests/harness (tests/harness/tracer.py): its Tracer
starts them, waits until they are attached, syncs flow with marker requests
and stops them. Run it as `python bench/run.py ...`, or import it.
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
from harness.tracer import Tracer, build_agent_here, nltrace  # noqa: E402

from nltrace import records  # noqa: E402  (the hist key layout, from records.h)

DUMMY_LINKS = 40            # so that a link dump spans several reads
DUMP_SIZES = (10, 100, 1000)


def netns_name(links):
    return f"nlbench{links}"


# name -> nlload's arguments
MODES = {
    "get": ["get"],
    "dump": ["dump"],
    "genl": ["genl"],
    "get-batch10": ["get", "--batch", "10"],
    "get-batch100": ["get", "--batch", "100"],
    "get-senders2": ["get", "--senders", "2"],
    **{f"dump-links{n}": ["dump", "--netns", f"/run/netns/{netns_name(n)}"] for n in DUMP_SIZES},
}
BASE_MODES = ("get", "dump", "genl")
# the growth table's columns: (heading, modes whose ratios it lists)
GROWTH = (("requests per sendmsg: 1, 10, 100", ("get", "get-batch10", "get-batch100")),
          ("senders: 1, 2", ("get", "get-senders2")),
          ("links per dump: 10, 100, 1000", tuple(f"dump-links{n}" for n in DUMP_SIZES)))
GROWTH_MODES = tuple(dict.fromkeys(m for _, modes in GROWTH for m in modes))
SETTLE_S = 1.0              # after the tracer is attached, before the first T window
QUIET_S = 1.0               # bpftrace's map print is complete once it stops growing this long
QUIET_MAX_S = 300
MARKER_RETRY_S = 5
BPFTRACE_SIGINT_RESEND_S = 5

BPFTRACE_PROGRAM = os.path.join(ROOT, "bench", "netlink-hist.bt")
with open(BPFTRACE_PROGRAM) as _f:
    BPFTRACE_TEXT = _f.read()
BPFTRACE_FUNCTIONS = tuple(re.findall(r"\bkprobe:(\w+)", BPFTRACE_TEXT))   # the functions it times


def kfunc_program():
    """netlink-hist.bt on BPF trampolines: the same program, kfunc/kretfunc for kprobe/kretprobe."""
    return re.sub(r"\bkprobe:", "kfunc:", re.sub(r"\bkretprobe:", "kretfunc:", BPFTRACE_TEXT))


# nltrace-agent built for the running kernel, for the -agent tracers (build_agent)
AGENT = "/tmp/nltrace-bench-agent/nltrace-agent"

# name -> argv; a name's kind (what is counted, how it is stopped) is its part before "-"
TRACERS = {
    "flow": nltrace("flow", "--json"),
    "flow-snaplen16": nltrace("flow", "--json", "--snaplen", "16"),
    "flow-agent": nltrace("flow", "--json", "--agent", AGENT),
    "latency": nltrace("latency"),
    "latency-agent": nltrace("latency", "--agent", AGENT),
    # the five functions netlink-hist.bt times, and nothing else: the same work as bpftrace's
    "latency-functions": nltrace("latency", "--by", "function", "--functions", ",".join(BPFTRACE_FUNCTIONS)),
    "bpftrace-kfunc": ["bpftrace", "-e", kfunc_program()],
    "bpftrace": ["bpftrace", BPFTRACE_PROGRAM],
}
HIST_LINE = re.compile(r"^[\[(][^\]\)]*[\]\)]\s+(\d+)\s+\|")


def build_agent():
    """nltrace build --target x86_64 for the running kernel (its BTF and kallsyms), into AGENT's directory."""
    subprocess.run(build_agent_here(os.path.dirname(AGENT)), check=True, capture_output=True, cwd=ROOT)


def run_json(argv):
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


class NodeCounter:
    """flow --json's lines, counted and then discarded: the nodes of nlload's trees."""

    def __init__(self):
        self.nodes = 0

    def __call__(self, line):
        if '"comm":"nlload"' in line:
            self.nodes += line.count('"func":')


class BenchTracer:
    """One tracer started for a T window, and what it accounted for so far."""

    def __init__(self, name):
        self.name, self.kind = name, name.split("-")[0]
        if self.kind == "flow":
            self.counter = NodeCounter()
            self.tool = Tracer(TRACERS[name], parse=self.counter)
        elif self.kind == "bpftrace":   # no --ready-file: it prints "Tracing" from BEGIN
            self.tool = Tracer(TRACERS[name], parse=str, ready_line="Tracing")
        else:
            self.tool = Tracer(TRACERS[name], parse=str)
        self.startup_s = self.tool.startup_s
        time.sleep(SETTLE_S)

    def calls(self):
        """Traced calls accounted for so far, once the tracer has caught up."""
        if self.kind == "flow":
            # while the ring buffer is still full of the window's trees the
            # marker's are lost too: a marker goes out again every MARKER_RETRY_S
            self.tool.sync(timeout=QUIET_MAX_S, resend_s=MARKER_RETRY_S)
            return self.counter.nodes
        if self.kind == "latency":
            return latency_calls()
        # bpftrace prints every map on SIGUSR1; the newest print is cumulative
        before = self.tool.mark()
        self.tool.proc.send_signal(signal.SIGUSR1)
        self.tool.wait(lambda: len(self.tool.stdout) > before, QUIET_S)   # (with no map yet, it prints nothing)
        self.tool.wait_quiet(QUIET_S, QUIET_MAX_S)
        with self.tool.cond:
            printed = self.tool.stdout[before:]
        return sum(int(m.group(1)) for m in map(HIST_LINE.match, printed) if m)

    def lost(self):
        if self.kind == "flow":
            return flow_lost()
        if self.kind == "bpftrace":
            with self.tool.cond:
                text = "\n".join(self.tool.stdout + self.tool.stderr)
            return sum(int(n) for n in re.findall(r"Lost (\d+) events", text))
        return 0

    def stop(self):
        if self.kind == "bpftrace":
            # bpftrace 0.17 checks its SIGINT flag only when epoll_wait is
            # interrupted or an event arrives: a SIGINT that lands between two
            # epoll_waits is missed while no event comes (seen in CI: it waited
            # for good). Another SIGINT while it waits ends it.
            status = self.tool.stop(signal.SIGINT, QUIET_MAX_S, resend_s=BPFTRACE_SIGINT_RESEND_S)
        else:
            status = self.tool.stop(signal.SIGTERM, QUIET_MAX_S)
        if status != 0:
            raise SystemExit(f"bench: {self.name} exited {status}: {self.tool.stderr[-30:]}")
        self.summary = [line for line in self.tool.stderr if line.strip()][-1:]


def bpf_map(name):
    """[(key bytes, [per-CPU value bytes])] of the map with this name."""
    out = []
    for entry in run_json(["bpftool", "-j", "map", "dump", "name", name]):
        key = bytes(int(b, 16) for b in entry["key"])
        values = entry["values"] if isinstance(entry["values"], list) else [{"value": entry["value"]}]
        out.append((key, [bytes(int(b, 16) for b in v["value"]) for v in values]))
    return out


def u64(raw):
    return struct.unpack("=Q", raw[:8])[0]


def flow_lost():
    for key, values in bpf_map("counters"):
        if struct.unpack("=I", key)[0] == records.C.NLT_CNT_LOST:
            return sum(u64(v) for v in values)
    return 0


KIND_OFFSET = records.ffi.offsetof("struct nlt_hist_key", "kind")
SLOT_OFFSET = records.ffi.offsetof("struct nlt_hist_key", "slot")


def latency_calls():
    """Samples of the per-function histograms: one per traced call."""
    total = 0
    for key, values in bpf_map("hists"):
        kind = struct.unpack_from("=I", key, KIND_OFFSET)[0]
        slot = struct.unpack_from("=I", key, SLOT_OFFSET)[0]
        if kind == records.C.NLT_HIST_FUNCTION and slot != records.C.NLT_SLOT_MAX:
            total += sum(u64(v) for v in values)
    return total


def window(nlload, mode, seconds):
    return run_json([nlload, *MODES[mode], "--duration", str(seconds)])


BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled"
TRACING_PROGRAM_TYPES = {"kprobe", "tracing", "raw_tracepoint", "tracepoint", "perf_event"}


def bpf_run_times_ns():
    """{id: ns} of every tracing program loaded: how long it has run while the statistics were on."""
    return {p["id"]: p.get("run_time_ns", 0) for p in run_json(["bpftool", "-j", "prog", "show"])
            if p.get("type") in TRACING_PROGRAM_TYPES}


def kernel_cost(nlload, modes, seconds):
    """{mode: ns the loaded tracing programs ran per request}, one window per mode."""
    with open(BPF_STATS, "w") as f:
        f.write("1")
    try:
        cost = {}
        for mode in modes:
            before = bpf_run_times_ns()
            load = window(nlload, mode, seconds)
            after = bpf_run_times_ns()
            # the tracer's programs, loaded throughout (not bpftool's own iterator, loaded per call)
            cost[mode] = sum(after[i] - before[i] for i in before.keys() & after.keys()) / load["requests"]
        return cost
    finally:
        with open(BPF_STATS, "w") as f:
            f.write("0")


def dummy_links(count, netns=None):
    batch = "".join(f"link add nlbench{i} type dummy\n" for i in range(count))
    subprocess.run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=batch, text=True, check=True)


def create_links(with_namespaces):
    """40 dummy links here; for the growth modes a namespace per dump size N,
    holding N links (lo and N-1 dummies)."""
    dummy_links(DUMMY_LINKS)
    for n in DUMP_SIZES if with_namespaces else ():
        subprocess.run(["ip", "netns", "add", netns_name(n)], check=True)
        subprocess.run(["ip", "-n", netns_name(n), "link", "set", "lo", "up"], check=True)
        dummy_links(n - 1, netns_name(n))


def remove_links(with_namespaces):
    subprocess.run(["ip", "-batch", "-"], text=True, check=True,
                   input="".join(f"link del nlbench{i}\n" for i in range(DUMMY_LINKS)))
    for n in DUMP_SIZES if with_namespaces else ():
        subprocess.run(["ip", "netns", "del", netns_name(n)], check=True)


def measure(nlload, tracers, modes, seconds, rounds):
    """{tracer: summary} of B T ... B windows of every mode, rounds T windows per tracer."""
    if not tracers:
        return {}
    untraced = {m: [] for m in modes}       # rate of each B window

    def b_windows():
        for mode in modes:
            untraced[mode].append(window(nlload, mode, seconds)["req_per_s"])

    for mode in modes:   # discarded: the first windows after boot (or a namespace's creation) run slow
        window(nlload, mode, seconds)
    results = {}
    for name in tracers:
        for mode in modes:
            untraced[mode].clear()
        runs = []
        for _ in range(rounds):
            b_windows()
            tracer = BenchTracer(name)
            run = {"startup_s": tracer.startup_s, "windows": {}}
            for mode in modes:
                calls_before, lost_before = tracer.calls(), tracer.lost()
                load = window(nlload, mode, seconds)
                ended = time.monotonic()
                calls_after, lost_after = tracer.calls(), tracer.lost()
                run["windows"][mode] = dict(load, calls=calls_after - calls_before,
                                            lost=lost_after - lost_before,
                                            catchup_s=time.monotonic() - ended)
            if len(runs) == rounds - 1:
                run["bpf_ns_per_request"] = kernel_cost(nlload, modes, seconds)
            tracer.stop()
            run["summary"] = tracer.summary
            runs.append(run)
            print(f"bench: {name} round {len(runs)}: started in {tracer.startup_s:.1f} s; "
                  + "; ".join(f"{m} {w['req_per_s']:.0f} req/s, {w['calls']} calls, {w['lost']} lost"
                              for m, w in run["windows"].items()), file=sys.stderr, flush=True)
        b_windows()
        results[name] = summarize(runs, dict(untraced))
    return results


def summarize(runs, untraced):
    rows = {}
    for mode in untraced:
        ratios, events, lost = [], 0, 0
        seconds = 0.0
        for i, run in enumerate(runs):
            w = run["windows"][mode]
            base = (untraced[mode][i] + untraced[mode][i + 1]) / 2
            ratios.append(w["req_per_s"] / base)
            events += 2 * w["calls"]
            seconds += w["seconds"]
            lost += w["lost"]
        rows[mode] = {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                      "catchup_s": max(r["windows"][mode]["catchup_s"] for r in runs),
                      "ratio_max": max(ratios), "ratios": ratios,
                      "untraced_req_per_s": statistics.median(untraced[mode]),
                      "traced_req_per_s": statistics.median(r["windows"][mode]["req_per_s"] for r in runs),
                      "events_per_s": events / seconds, "lost": lost,
                      "bpf_ns_per_request": runs[-1]["bpf_ns_per_request"][mode]}
    return {"startup_s": statistics.median(r["startup_s"] for r in runs), "modes": rows, "runs": runs,
            "untraced": untraced}


def table(results, modes):
    lines = ["| mode | tracer | ratio (median) | min | max | untraced req/s | traced req/s "
             "| events/s | lost | startup s | catch-up s | BPF µs/request |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode in modes:
        for name, res in results.items():
            r = res["modes"][mode]
            kind = name.split("-")[0]
            lost = f"{r['lost']} trees" if kind == "flow" else str(r["lost"]) if kind == "bpftrace" else "n/a"
            catchup = f"{r['catchup_s']:.1f}" if kind == "flow" else "n/a"
            lines.append(f"| {mode} | {name} | {r['ratio_median']:.2f} | {r['ratio_min']:.2f} "
                         f"| {r['ratio_max']:.2f} | {r['untraced_req_per_s']:.0f} "
                         f"| {r['traced_req_per_s']:.0f} | {r['events_per_s']:.0f} | {lost} "
                         f"| {res['startup_s']:.1f} | {catchup} | {r['bpf_ns_per_request'] / 1000:.1f} |")
    return "\n".join(lines)


def growth_table(results):
    """Per tracer, the median ratio (min-max) at each step of each kind of growth."""
    lines = ["| tracer | " + " | ".join(heading for heading, _ in GROWTH) + " |",
             "| --- |" + " --- |" * len(GROWTH)]
    for name, res in results.items():
        cells = []
        for _, modes in GROWTH:
            rows = [res["modes"][m] for m in modes]
            cells.append(", ".join(f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
                                   for r in rows))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nlload", required=True, help="the built bench/nlload.c")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per window and mode")
    parser.add_argument("--rounds", type=int, default=3, help="T windows per tracer (B T B T B T B: 3)")
    parser.add_argument("--tracers", default=",".join(TRACERS), help="comma-separated: " + ",".join(TRACERS))
    parser.add_argument("--growth-tracers", default="flow,latency,bpftrace-kfunc",
                        help="the tracers of the growth table (empty: no growth table)")
    parser.add_argument("--growth-window", type=float, default=2.0, help="seconds per growth window and mode")
    parser.add_argument("--host", default="", help="the machine the VM runs on, for the report")
    parser.add_argument("--out", required=True, help="directory for results.json and RESULTS.md")
    args = parser.parse_args()
    args.tracers = args.tracers.split(",")
    args.growth_tracers = [t for t in args.growth_tracers.split(",") if t]
    if unknown := set(args.tracers + args.growth_tracers) - set(TRACERS):
        parser.error(f"unknown tracers: {', '.join(sorted(unknown))}")

    started = time.time()
    if any(name.endswith("-agent") for name in args.tracers + args.growth_tracers):
        build_agent()
    create_links(with_namespaces=bool(args.growth_tracers))
    try:
        results = measure(args.nlload, args.tracers, BASE_MODES, args.window, args.rounds)
        growth = measure(args.nlload, args.growth_tracers, GROWTH_MODES, args.growth_window, args.rounds)
    finally:
        remove_links(with_namespaces=bool(args.growth_tracers))
    took = time.time() - started
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    text = "\n".join([
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, kernel {platform.release()} "
        f"({platform.machine()}), guest CPU {cpu} × {os.cpu_count()}"
        + (f", on {args.host}" if args.host else ""),
        f"{args.window:g} s windows, {args.rounds} rounds (B T B T B T B with 3), {DUMMY_LINKS} dummy links; "
        f"bench took {took / 60:.1f} min.",
        "",
        table(results, BASE_MODES),
        "",
    ] + ([f"How the ratio changes as the work per message grows ({args.growth_window:g} s windows, "
          f"{args.rounds} rounds; median, min-max):", "", growth_table(growth), ""] if growth else []))
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "kernel": platform.release(), "results": results, "growth": growth},
                  f, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
