#!/usr/bin/env python3
"""bench/RESULTS.md from one `make bench`: the VM's overhead table
(bench/run.py's table.md), the agent's on the emulated AST2500
(bench/board.py's board.md) and the host-side throughput
(bench/throughput.py's JSON lines). Usage: bench/report.py OUT_DIR > bench/RESULTS.md"""

import json
import os
import sys

out = sys.argv[1]
with open(os.path.join(out, "table.md")) as f:
    overhead = f.read().strip()
with open(os.path.join(out, "board.md")) as f:
    board = f.read().strip()
with open(os.path.join(out, "throughput.jsonl")) as f:
    stages = [json.loads(line) for line in f if line.strip()]
host = os.uname()

print(f"""# Bench results

Made by `make bench`; see bench/README.md for what is measured and how.

## Overhead in the VM (TCG: only the ratios mean anything)

ratio = requests/s of bench/nlload.c while traced over the same untraced, in
alternating windows (B T B T B T B); events/s = probe hits (2 per traced call)
the tracer accounted for; lost = records (flow: whole trees) the ring buffer
had no room for; startup = start to attached (nltrace's --ready-file written,
bpftrace's Tracing line).

{overhead}

## The agent on the emulated BMC (TCG: only the ratios mean anything)

ratio = requests/s of bench/nlload.c while the agent runs (its stream to
/dev/null) over the same without it, B T B for each tracer and mode.

{board}

## Host-side throughput (no kernel)

Records of tests/fixtures' stream, replicated with distinct timestamps and
sequence numbers, on {host.sysname} {host.release} ({host.machine}):

| stage | trees | events | trees/s | events/s |
| --- | --- | --- | --- | --- |""")
for s in stages:
    print(f"| {s['stage']} | {s['trees']} | {s['events']} | {s['trees_per_s']} | {s['events_per_s']} |")
