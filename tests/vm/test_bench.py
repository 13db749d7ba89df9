"""The overhead bench still runs: bench/run.py in its minimal mode (one round of
short windows per tracer). Benchmarks never fail a test on a timing: this
checks only that every tracer ran and saw the load, and that the table was
written. `make bench` is the real measurement."""

import json
import os
import subprocess
import sys

from conftest import ROOT

NLLOAD = os.path.join(ROOT, ".cache", "bench", "nlload")
MODES = ("get", "dump", "genl")
# flow-snaplen16 runs flow's code with another option: left out here
TRACERS = ("flow", "latency", "bpftrace-kfunc", "bpftrace")
# the growth table's measurement is the same for every tracer: the quickest to start
GROWTH_TRACER = "bpftrace-kfunc"
GROWTH_MODES = ("get", "get-batch10", "get-batch100", "get-senders2",
                "dump-links10", "dump-links100", "dump-links1000")


def test_bench_minimal_mode(tmp_path):
    assert os.access(NLLOAD, os.X_OK), "bench/nlload.c is not built: `make test-vm` builds it"
    # kept where the host can read it (tools/vm's shared directory)
    out = os.path.join(os.environ.get("NLTRACE_VM_OUT", str(tmp_path)), "bench-minimal")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--nlload", NLLOAD,
                           "--window", "0.5", "--rounds", "1", "--tracers", ",".join(TRACERS),
                           "--growth-tracers", GROWTH_TRACER, "--growth-window", "0.5", "--out", out],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    results = saved["results"]
    for tracer in TRACERS:
        for mode in MODES:
            assert f"| {mode} | {tracer} |" in table, table
            row = results[tracer]["modes"][mode]
            assert row["events_per_s"] > 0, (tracer, mode, row)
            assert row["traced_req_per_s"] > 0 and row["untraced_req_per_s"] > 0, (tracer, mode, row)
            assert row["bpf_ns_per_request"] > 0, (tracer, mode, row)   # its programs ran, as the kernel counts
    assert f"| {GROWTH_TRACER} | " in table.split("grows")[1], table
    for mode in GROWTH_MODES:
        row = saved["growth"][GROWTH_TRACER]["modes"][mode]
        assert row["events_per_s"] > 0 and row["traced_req_per_s"] > 0, (mode, row)
