"""What both emulated boards run and check: tests/arm (raspi1ap with
Debian's rpi kernel) and tests/board (the AST2500 with its own kernels).

build_and_boot() builds the agent for a kernel, cross-compiles the clients
and boots the board once with a script that starts with AGENT_RUNS: the
agent with the BPF JIT on and then off, each time on
tests/clients/workload.sh. The test_* functions here check what came back;
each board's module imports them, and pytest runs them there with that
module's `board` fixture (the directory the board's files came back to).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness.shapes import AGENT_TEXT_LOAD, NLLOAD_SENDS, check_agent_text, nlload_sends, summaries
from harness.tracer import ROOT, render

ARM_CACHE = os.path.join(os.environ.get("NLTRACE_CACHE", os.path.join(ROOT, ".cache")), "arm")
REFERENCE = os.path.join(os.environ.get("NLTRACE_VM_OUT", os.path.join(ROOT, ".cache", "vm-out")),
                         "agent-x86", "reference.json")
MAX_AGENT_BYTES = 1_500_000
BOOT_TIMEOUT_S = 900

# Runs on the board, in /nltrace. For each JIT setting: the flow stream of
# the workload, a latency stream filtered to RTM_GETLINK (7 of them among 3
# CTRL_CMD_GETFAMILY), the --text trees of AGENT_TEXT_LOAD, and the
# agent's peak memory.
AGENT_RUNS = r"""
. ./board.sh
for jit in 1 0; do
    echo $jit > /proc/sys/net/core/bpf_jit_enable
    ./nltrace-agent --ready-file /out/ready-flow-jit$jit -o /out/flow-jit$jit.nltrace 2> /out/flow-jit$jit.err &
    agent=$!
    attached /out/ready-flow-jit$jit $agent || exit 1
    sh ./workload.sh /nltrace || exit 1
    grep VmHWM /proc/$agent/status > /out/memory-jit$jit
    kill -INT $agent; wait $agent || exit 1
    ./nltrace-agent --ready-file /out/ready-latency-jit$jit --latency -c nlload --type RTM_GETLINK \
        -o /out/latency-jit$jit.nltrace 2> /out/latency-jit$jit.err &
    agent=$!
    attached /out/ready-latency-jit$jit $agent || exit 1
    ./nlload get --count 7 > /dev/null
    ./nlload genl --count 3 > /dev/null
    kill -INT $agent; wait $agent || exit 1
    ./nltrace-agent --ready-file /out/ready-text-jit$jit --text -c nlload > /out/text-jit$jit.txt \
        2> /out/text-jit$jit.err &
    agent=$!
    attached /out/ready-text-jit$jit $agent || exit 1
""" + "".join(f"    ./nlload {args} > /dev/null\n" for args in AGENT_TEXT_LOAD) + r"""
    kill -INT $agent; wait $agent || exit 1
    cat /proc/sys/net/core/bpf_jit_enable > /out/jit-after-jit$jit
done
"""


def nltrace_build(vmlinux, out, *extra):
    return subprocess.run([sys.executable, "-m", "nltrace", "build", "--target", "armv6", "--vmlinux", vmlinux,
                           "--sysroot", os.path.join(ARM_CACHE, "sysroot"), "-o", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT)


def build_and_boot(tmp_path_factory, vmlinux, script, clients=("bench/nlload.c",), boot_args=()):
    """Build the agent for vmlinux and the clients (paths under the
    repository) for armv6, boot once running script (after AGENT_RUNS'
    helpers are in place), and return the directory the board's files came
    back to, with the agent beside them. boot_args: tools/arm/boot's board choice."""
    payload = tmp_path_factory.mktemp("payload")
    build = nltrace_build(vmlinux, payload)
    assert build.returncode == 0, build.stderr
    for client in clients:
        name = os.path.splitext(os.path.basename(client))[0]
        cc = subprocess.run(["arm-linux-gnueabi-gcc", "-O2", "-Wall", "-static", "-o", str(payload / name),
                             os.path.join(ROOT, client)], capture_output=True, text=True)
        assert cc.returncode == 0, cc.stderr
    shutil.copy(os.path.join(ROOT, "tests", "clients", "workload.sh"), payload)
    run_sh = tmp_path_factory.mktemp("script") / "run.sh"
    run_sh.write_text(script)
    out = tmp_path_factory.mktemp("board")
    boot = subprocess.run([os.path.join(ROOT, "tools", "arm", "boot"), *boot_args, "--jit", "on",
                           "--timeout", str(BOOT_TIMEOUT_S), "--payload", str(payload),
                           "--out", str(out), str(run_sh)], capture_output=True, text=True)
    assert boot.returncode == 0, boot.stdout[-4000:] + boot.stderr[-2000:]
    (out / "build.log").write_text(build.stderr)
    shutil.copy(payload / "nltrace-agent", out)
    return out


def test_agent_size(board):
    size = os.path.getsize(board / "nltrace-agent")
    print(f"stripped nltrace-agent for armv6: {size} bytes")
    assert size < MAX_AGENT_BYTES


@pytest.mark.parametrize("jit", [1, 0])
def test_trees_match_x86(board, jit):
    trees, summary_line = render("flow", board / f"flow-jit{jit}.nltrace")
    assert ", 0 lost," in summary_line and ", 0 incomplete" in summary_line, summary_line
    sends = nlload_sends(trees)
    assert len(sends) == NLLOAD_SENDS, [t["message"] for t in sends]
    assert [t["message"]["cmd_name"] for t in sends[:3]] == ["CTRL_CMD_GETFAMILY"] * 3
    assert {t["handler"] for t in sends[:3]} == {"ctrl_getfamily"}
    assert [t["error"]["name"] for t in sends[3:5]] == ["ENODEV", "ENODEV"]
    assert sends[5]["handler"] == "rtnl_dump_ifinfo"
    print((board / f"memory-jit{jit}").read_text().strip())
    if not os.path.exists(REFERENCE):
        pytest.fail(f"no x86 reference trees at {REFERENCE}: run make test-vm first")
    with open(REFERENCE) as f:
        x86 = json.load(f)
    assert summaries(trees, x86) == summaries(x86, trees)


@pytest.mark.parametrize("jit", [1, 0])
def test_latency_counts_exactly(board, jit):
    """--type RTM_GETLINK, filtered in the kernel: the 7 RTM_GETLINK, none of the 3 CTRL_CMD_GETFAMILY."""
    reports, _ = render("latency", board / f"latency-jit{jit}.nltrace", "--by", "message")
    assert {h["key"]: h["count"] for h in reports[-1]["histograms"]} == {"RTM_GETLINK": 7}


@pytest.mark.parametrize("jit", [1, 0])
def test_text_mode_and_jit_setting(board, jit):
    lines = (board / f"text-jit{jit}.txt").read_text().splitlines()
    check_agent_text(lines)
    # the agent left the JIT as it found it
    assert (board / f"jit-after-jit{jit}").read_text().strip() == str(jit)


def test_flow_programs_run_jit_compiled(board):
    """With the JIT on, the flow programs load as they are (all fit the ARMv6
    JIT); only the longer latency programs go to the interpreter."""
    assert "interpreter" not in (board / "flow-jit1.err").read_text()
    print((board / "latency-jit1.err").read_text())
