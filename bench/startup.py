#!/usr/bin/env python3
"""Time to the ready file of `nltrace flow` and `nltrace latency`, for this
tree against another checkout (a `git worktree` of an older commit), and of
bpftrace's kfunc program, in one boot. Run inside the VM, as root:

    git worktree add /tmp/before REV
    make vm CMD='.venv/bin/python bench/startup.py /tmp/before'

One start first, not counted: it reads BCC, clang's headers and the modules
over the VM's 9p root, which every later start finds cached. Then --rounds
rounds, each tree started in turn (the order reversed every other round).
Each tree runs from its own directory with -S, so that neither `python -m`'s
cwd entry nor the editable install's finder picks this tree's package.
"""

import argparse
import json
import os
import site
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness.tracer as harness_tracer  # noqa: E402
from harness.tracer import Tracer  # noqa: E402

COMMANDS = {"flow": ["flow", "--json"], "latency": ["latency", "--json"]}
BPFTRACE = ["bpftrace", "-e", 'kfunc:netlink_sendmsg { @[comm] = count(); } BEGIN { printf("Tracing\\n"); }']


def start_time(tree, argv):
    """Seconds from starting `nltrace ARGV` of TREE until its ready file."""
    os.environ["PYTHONPATH"] = ":".join([tree, *site.getsitepackages()])
    harness_tracer.ROOT = tree     # the tool's cwd
    try:
        tracer = Tracer([sys.executable, "-S", "-m", "nltrace", *argv])
        tracer.stop()
        return round(tracer.startup_s, 1)
    finally:
        del os.environ["PYTHONPATH"]
        harness_tracer.ROOT = ROOT


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the other checkout's directory")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": ROOT}
    start_time(ROOT, COMMANDS["latency"])
    out = {}
    for r in range(args.rounds):
        for command, argv in COMMANDS.items():
            for name, tree in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):
                out.setdefault(f"{command} {name}", []).append(start_time(tree, argv))
        bpftrace = Tracer(BPFTRACE, parse=str, ready_line="Tracing")
        bpftrace.stop(resend_s=5)
        out.setdefault("bpftrace kfunc", []).append(round(bpftrace.startup_s, 1))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
