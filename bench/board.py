#!/usr/bin/env python3
"""What the agent costs on the emulated AST2500 (JIT on): bench/nlload.c's
requests/s traced by the flow agent, by the latency agent and by the peer a
BMC engineer has without nltrace, ftrace's function_graph tracer on the same
functions with its trace_pipe read, each over the untraced windows on either
side (B T B T B per tracer and mode, --rounds times), in one boot; the
agent's peak memory (VmHWM) and its size.

    bench/board.py --kernel KDIR --out DIR [--window S] [--rounds N]

KDIR: a tools/arm/kernel directory. Writes DIR/board.json and DIR/board.md
(bench/report.py puts the table in bench/RESULTS.md). Under TCG only the
ratios mean anything, as in the VM bench.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nltrace.catalogue import FLOW_DEFAULT, TREE_FUNCTIONS  # noqa: E402

SYSROOT = os.path.join(os.environ.get("NLTRACE_CACHE", os.path.join(ROOT, ".cache")), "arm", "sysroot")
MODES = ("get", "dump", "genl")
TRACERS = ("flow", "latency", "function_graph")
BOOT_TIMEOUT_S = 3600

# On the board: for each round, mode and tracer, B T B windows of nlload
# (the agent writes its stream to /dev/null, and cat reads function_graph's
# trace_pipe into it: the cost is the kernel side and the reader), and the
# agent's VmHWM. function_graph traces the functions the flow agent probes
# (FUNCTIONS; each one the kernel has), as `set_ftrace_filter` takes them.
BOARD_SCRIPT = r"""
. ./board.sh
echo 1 > /proc/sys/net/core/bpf_jit_enable
T=/sys/kernel/tracing
for f in $FUNCTIONS; do echo $f >> $T/set_ftrace_filter 2>/dev/null; done
wc -l < $T/set_ftrace_filter > /out/function_graph-functions
r=1
while [ $r -le $ROUNDS ]; do
    for mode in get dump genl; do
        for tracer in flow latency function_graph; do
            w=r$r-$mode-$tracer
            ./nlload $mode --duration $WINDOW > /out/$w-b0.json || exit 1
            if [ $tracer = function_graph ]; then
                echo function_graph > $T/current_tracer
                cat $T/trace_pipe > /dev/null & reader=$!
                ./nlload $mode --duration $WINDOW > /out/$w-t.json || exit 1
                echo nop > $T/current_tracer
                kill $reader; wait $reader
            else
                opt=; [ $tracer = latency ] && opt=--latency
                ./nltrace-agent $opt --ready-file /tmp/ready-$w -o /dev/null 2> /out/$w.err & agent=$!
                attached /tmp/ready-$w $agent || exit 1
                ./nlload $mode --duration $WINDOW > /out/$w-t.json || exit 1
                grep VmHWM /proc/$agent/status > /out/$w-hwm
                kill -INT $agent; wait $agent || exit 1
            fi
            ./nlload $mode --duration $WINDOW > /out/$w-b1.json || exit 1
        done
    done
    r=$((r+1))
done
"""


def run(cmd, what):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench/board.py: {what} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def measure(kernel, window, rounds):
    with tempfile.TemporaryDirectory(prefix="nltrace-board-bench-") as tmp:
        payload, out = os.path.join(tmp, "payload"), os.path.join(tmp, "out")
        run([sys.executable, "-m", "nltrace", "build", "--target", "armv6", "--vmlinux",
             os.path.join(kernel, "vmlinux"), "--sysroot", SYSROOT, "-o", payload], "nltrace build")
        run(["arm-linux-gnueabi-gcc", "-O2", "-static", "-o", os.path.join(payload, "nlload"),
             os.path.join(ROOT, "bench", "nlload.c")], "building nlload")
        script = os.path.join(tmp, "run.sh")
        functions = " ".join(sorted(p.name for p in TREE_FUNCTIONS if p.name in FLOW_DEFAULT))
        with open(script, "w") as f:
            f.write(f"ROUNDS={rounds}\nWINDOW={window}\nFUNCTIONS='{functions}'\n" + BOARD_SCRIPT)
        run([os.path.join(ROOT, "tools", "arm", "boot"), "--kernel", kernel, "--jit", "on", "--timeout",
             str(BOOT_TIMEOUT_S), "--payload", payload, "--out", out, script], "the board's run")
        agent_bytes = os.path.getsize(os.path.join(payload, "nltrace-agent"))
        with open(os.path.join(kernel, "release")) as f:
            release = f.read().strip()

        def rate(name):
            with open(os.path.join(out, name + ".json")) as f:
                return json.load(f)["req_per_s"]

        with open(os.path.join(out, "function_graph-functions")) as f:
            graphed = int(f.read())
        rows = {}
        for tracer in TRACERS:
            for mode in MODES:
                ratios, hwm = [], []
                for r in range(1, rounds + 1):
                    w = f"r{r}-{mode}-{tracer}"
                    ratios.append(rate(w + "-t") / ((rate(w + "-b0") + rate(w + "-b1")) / 2))
                    if tracer != "function_graph":
                        with open(os.path.join(out, w + "-hwm")) as f:
                            hwm.append(int(f.read().split()[1]))
                rows[f"{tracer} {mode}"] = {"ratios": ratios, "ratio_median": statistics.median(ratios),
                                            "ratio_min": min(ratios), "ratio_max": max(ratios),
                                            "vmhwm_kb": max(hwm) if hwm else None}
    return {"kernel": release, "window_s": window, "rounds": rounds, "agent_bytes": agent_bytes,
            "function_graph_functions": graphed, "rows": rows}


def table(results):
    lines = [f"Kernel {results['kernel']} (AST2500 under `qemu-system-arm -M ast2500-evb`, BPF JIT on), "
             f"{results['rounds']} rounds of {results['window_s']} s windows; nltrace-agent "
             f"{results['agent_bytes']} bytes stripped; function_graph on "
             f"{results.get('function_graph_functions', '?')} functions.", "",
             "| tracer | mode | ratio (median) | min–max | agent VmHWM |", "| --- | --- | --- | --- | --- |"]
    for key, row in results["rows"].items():
        tracer, mode = key.split()
        spread = f"{row['ratio_min']:.2f}–{row['ratio_max']:.2f}"
        hwm = f"{row['vmhwm_kb']} kB" if row["vmhwm_kb"] else "(no agent)"
        lines.append(f"| {tracer} | {mode} | {row['ratio_median']:.2f} | {spread} | {hwm} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", required=True, help="a tools/arm/kernel directory")
    parser.add_argument("--out", required=True)
    parser.add_argument("--window", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("qemu-system-arm"):
        sys.exit("bench/board.py: qemu-system-arm is not installed (make install)")
    results = measure(args.kernel, args.window, args.rounds)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "board.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "board.md"), "w") as f:
        f.write(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
