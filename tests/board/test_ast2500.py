"""The BMC path on the emulated AST2500: for each kernel (tools/arm/kernel:
Debian's linux-source 5.10 and 6.12 built with aspeed_g5_defconfig and
nltrace's config fragment, full DWARF, no BTF), `nltrace build --target
armv6` against its vmlinux, then ONE boot under qemu-system-arm -M
ast2500-evb (tools/arm/boot --kernel) that runs the agent's --check, then
the agent with the BPF JIT on and then off, each time with
tests/clients/workload.sh, then the BMC's own netlink users
(tests/clients/bmcnl.c), then a soak of a flow and a latency agent under
full-rate load. The streams come back over the serial console and
are read here with `nltrace flow/latency --input`. `make test` and
`make test-board` run it.

The trees are compared with the x86 agent's for the same workload, which
tests/vm/test_agent.py leaves in $NLTRACE_VM_OUT/agent-x86/reference.json.
"""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from harness.board import (AGENT_RUNS, build_and_boot, nltrace_build, test_agent_size,  # noqa: E402,F401
                           test_flow_programs_run_jit_compiled, test_latency_counts_exactly,
                           test_text_mode_and_jit_setting, test_trees_match_x86)
from harness.tracer import ROOT, render  # noqa: E402
from nltrace.decode import AF_MCTP  # noqa: E402

# make test and make test-board: each (make test-board BOARD_KERNELS=6.12: one)
KERNELS = os.environ.get("NLTRACE_BOARD_KERNELS", "6.12 5.10").split()
SOAK_S = 60

# Runs on the board, in /nltrace: --check's table and status, AGENT_RUNS,
# then the BMC's own netlink users (tests/clients/bmcnl.c), JIT on: networkd's
# dumps and the notifications of an address added and deleted, an NC-SI
# request, MCTP's link, address and route; last the soak: nlload's RTM_GETLINK
# at full rate for SOAK_S seconds with a flow agent (--text, its trees counted
# on the board: the stream would be too big for the serial console) and a
# latency agent attached together, their memory sampled every 10 s.
BOARD_SCRIPT = r"""
uname -r > /out/release
ip link set eth0 up     # its NC-SI (tools/arm/boot) finds its package while the agent runs below
./nltrace-agent --check > /out/check.txt 2>&1; echo $? > /out/check-status
""" + AGENT_RUNS + r"""
echo 1 > /proc/sys/net/core/bpf_jit_enable
./nltrace-agent --ready-file /out/ready-bmc -o /out/bmc.nltrace 2> /out/bmc.err & agent=$!
attached /out/ready-bmc $agent || exit 1
./bmcnl networkd --seconds 60 > /out/networkd.json 2> /out/networkd.err & networkd=$!
i=0; while ! grep -q ready /out/networkd.err; do sleep 0.2; i=$((i+1)); [ $i -lt 300 ] || exit 1; done
ip addr add 10.9.8.7/24 dev lo
ip addr del 10.9.8.7/24 dev lo
wait $networkd || exit 1
./bmcnl ncsi eth0 > /out/ncsi.json
./bmcnl mctp > /out/mctp.json
kill -INT $agent; wait $agent || exit 1
""" + f"SOAK_S={SOAK_S}" + r"""
sample() {   # sample SECONDS NAME PID: resident and anonymous kB
    awk -v t=$1 -v n=$2 '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print t, n, r, a}' /proc/$3/status
}
mkfifo /tmp/soak-text
awk '/^[0-9]/ && / RTM_GETLINK \[REQUEST/ && / -> / {n++} NR <= 40 {print > "/out/soak-flow-head.txt"}
     /^nltrace-agent: / {c = $0} END {print n + 0; print c}' < /tmp/soak-text > /out/soak-flow.txt & counter=$!
./nltrace-agent --ready-file /out/ready-soak-flow --text -c nlload --type RTM_GETLINK > /tmp/soak-text \
    2> /out/soak-flow.err & flow=$!
./nltrace-agent --ready-file /out/ready-soak-latency --latency -c nlload --type RTM_GETLINK \
    -o /out/soak-latency.nltrace 2> /out/soak-latency.err & latency=$!
attached /out/ready-soak-flow $flow && attached /out/ready-soak-latency $latency || exit 1
./nlload get --duration $SOAK_S > /out/soak-nlload.json & load=$!
s=0
while kill -0 $load 2>/dev/null; do
    sample $s flow $flow >> /out/soak-memory; sample $s latency $latency >> /out/soak-memory
    sleep 10; s=$((s + 10))
done
wait $load || exit 1
kill -INT $flow $latency; wait $flow && wait $latency && wait $counter || exit 1
"""


def board_kernel(version):
    """The directory tools/arm/kernel builds VERSION into (cached: fast once built)."""
    done = subprocess.run([os.path.join(ROOT, "tools", "arm", "kernel"), version], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=KERNELS)
def board(request, tmp_path_factory):
    """Build for one kernel, boot it once, and return the directory the board's files came back to."""
    kernel = board_kernel(request.param)
    out = build_and_boot(tmp_path_factory, os.path.join(kernel, "vmlinux"), BOARD_SCRIPT,
                         clients=("bench/nlload.c", "tests/clients/bmcnl.c"), boot_args=("--kernel", kernel))
    assert "the agent's required options are set" in (out / "build.log").read_text()
    return out


@pytest.mark.parametrize("version", KERNELS)
def test_build_refuses_the_stock_config(version, tmp_path):
    """The kernel's own aspeed_g5_defconfig, without nltrace's fragment: nltrace
    build refuses it, naming what is missing and the fragment."""
    kernel = board_kernel(version)
    done = nltrace_build(os.path.join(kernel, "vmlinux"), tmp_path, "--config", os.path.join(kernel, "stock.config"))
    assert done.returncode != 0 and not (tmp_path / "nltrace-agent").exists()
    message = done.stderr.strip().splitlines()[-1]
    assert "cannot run nltrace-agent" in message and "CONFIG_KPROBES=n (needs y)" in message, done.stderr
    before_6_10 = tuple(map(int, version.split("."))) < (6, 10)
    assert "nltrace.cfg" in message and ("nltrace-before-6.10.cfg" in message) == before_6_10, message


def test_check_on_the_board(board):
    """--check on a kernel built with the fragment: every line ok (the boot turned the JIT on), status 0."""
    lines = (board / "check.txt").read_text().splitlines()
    assert (board / "check-status").read_text().strip() == "0", lines
    rows = [line for line in lines if line.startswith(("CONFIG_", "kprobe PMU", "bpf() ", "BPF JIT", "root ",
                                                       "kernel release", "/proc/config.gz"))]
    assert len(rows) >= 7 and all(line[27:35].strip() == "ok" for line in rows), lines   # check.c's columns
    assert any(line.startswith("CONFIG_KPROBES ") for line in rows), lines


def bmc_trees(board):
    trees, summary_line = render("flow", board / "bmc.nltrace")
    assert ", 0 lost," in summary_line, summary_line
    return trees


def test_networkd_dumps_and_notifications(board):
    """A phosphor-networkd-like client: its bind names the six groups, its
    four dumps are named and handled, and each notification of `ip addr
    add` and `ip addr del` reached it: each message it read is a broadcast
    copy linked to the tree that sent it."""
    trees = bmc_trees(board)
    networkd = json.loads((board / "networkd.json").read_text())
    mine = [t for t in trees if t["pid"] == networkd["pid"]]
    (bind,) = [t for t in mine if t["root"]["func"] == "netlink_bind"]
    # RTMGRP_LINK, NEIGH, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE are groups 1, 3, 5, 7, 9, 11
    assert bind["socket"]["groups"] == [1, 3, 5, 7, 9, 11], bind["socket"]
    dumps = [t for t in mine if t["root"]["func"] == "netlink_sendmsg"]
    assert [t["message"]["type_name"] for t in dumps] == list(networkd["dumps"]), dumps
    assert all("NLM_F_DUMP" in t["message"]["flags"] and t["handler"] and not t["error"] for t in dumps), dumps
    changes = [t for t in trees if t["comm"] == "ip" and t["message"]
               and t["message"]["type_name"] in ("RTM_NEWADDR", "RTM_DELADDR")]
    assert [t["message"]["type_name"] for t in changes] == ["RTM_NEWADDR", "RTM_DELADDR"], changes
    assert all(not t["error"] for t in changes), changes
    for change in changes:
        assert any(d["portid"] == networkd["portid"] for d in change.get("deliveries", [])), change
    copies = [d for t in trees for d in t.get("deliveries", [])
              if d["portid"] == networkd["portid"] and d["via"] == "broadcast"]
    assert copies and not any(d["dropped"] for d in copies)
    # each notification it read is one of those copies, linked on the side
    # that ended last (copies after its RTM_DELADDR stay unread: it stops there)
    reads = [t for t in mine if t.get("from", {}).get("via") == "broadcast"]
    assert len(reads) + sum("read_by" in d for d in copies) == len(networkd["notifications"])
    assert "RTM_NEWADDR" in networkd["notifications"] and networkd["notifications"][-1] == "RTM_DELADDR"


def test_ncsi_over_generic_netlink(board):
    """NCSI_CMD_PKG_INFO for eth0, whose MAC talks NC-SI to QEMU's user
    network: the request named by family and command, and each message of
    the dump that answered it named so too (the kernel chose NCSI's id at
    boot: the replies are named from the request's dispatch)."""
    answer = json.loads((board / "ncsi.json").read_text())
    assert answer["family"] > 0, answer   # the NCSI family is registered (CONFIG_NET_NCSI)
    assert answer["pkg_info"] > 0, answer   # the dump's messages: NC-SI found its package
    trees = [t for t in bmc_trees(board) if t["comm"] == "bmcnl" and t["protocol"] == "NETLINK_GENERIC"
             and t["message"] and t["message"]["type"] == answer["family"]]
    (request,) = [t for t in trees if t["root"]["func"] == "netlink_sendmsg"]
    assert (request["message"]["family"], request["message"]["cmd_name"]) == ("NCSI", "NCSI_CMD_PKG_INFO")
    assert request["handler"] == "ncsi_pkg_info_all_nl" and not request["error"], request
    # one read per skb the dump filled: each holds one of its messages or more
    replies = [t["message"] for t in trees if t["root"]["func"] == "netlink_recvmsg"]
    assert 0 < len(replies) <= answer["pkg_info"], replies
    assert {(m["family"], m["cmd_name"]) for m in replies} == {("NCSI", "NCSI_CMD_PKG_INFO")}, replies


def test_mctp_over_rtnetlink(board):
    """MCTP's link, address and route requests: named, with the kernel's
    answer, and the address and route decoded as MCTP endpoint ids. 6.12
    has CONFIG_MCTP and takes the link and the address; 5.10 predates MCTP
    and refuses the family."""
    answer = json.loads((board / "mctp.json").read_text())
    requests = [t for t in bmc_trees(board) if t["comm"] == "bmcnl" and t["root"]["func"] == "netlink_sendmsg"
                and t["message"]["type_name"] in ("RTM_NEWLINK", "RTM_NEWADDR", "RTM_NEWROUTE")]
    assert [t["message"]["type_name"] for t in requests] == ["RTM_NEWLINK", "RTM_NEWADDR", "RTM_NEWROUTE"]
    for tree, key in zip(requests, ("newlink", "newaddr", "newroute")):
        assert (tree["error"] or {}).get("errno", 0) == -answer[key], (key, answer, tree["error"])
    # 6.12 takes the link's net and the address; the route (to EID 9 over lo) it refuses, EINVAL
    has_mctp = (board / "release").read_text().startswith("6.12")
    assert (answer["newlink"] == answer["newaddr"] == 0) == has_mctp, answer
    addr, route = requests[1]["message"], requests[2]["message"]
    assert addr["fields"]["family"] == route["fields"]["family"] == AF_MCTP
    assert addr["attrs"]["IFA_LOCAL"] == 8 and route["attrs"]["RTA_DST"] == 9


def test_soak_counts_and_memory(board):
    """Every request nlload sent at full rate is one flow tree shown (the
    agent keeps up on the board: nothing lost) and one latency sample;
    neither agent's anonymous memory grows after its first 10 s."""
    load = json.loads((board / "soak-nlload.json").read_text())
    shown, counters = (board / "soak-flow.txt").read_text().splitlines()
    counted = json.loads(counters.removeprefix("nltrace-agent: "))
    reports, _ = render("latency", board / "soak-latency.nltrace", "--by", "message")
    memory = {}
    for line in (board / "soak-memory").read_text().splitlines():
        seconds, name, rss, anon = line.split()
        memory.setdefault(name, []).append((int(seconds), int(rss), int(anon)))
    print(f"soak: {load['requests']} requests in {load['seconds']:.0f} s, flow {shown} trees shown, {counters}; "
          f"memory (s, VmRSS kB, RssAnon kB): {memory}")
    assert load["requests"] > 0 and load["errors"] == 0, load
    assert {h["key"]: h["count"] for h in reports[-1]["histograms"]} == {"RTM_GETLINK": load["requests"]}
    head = board / "soak-flow-head.txt"   # the text the count came from, for a failure to show
    assert (int(shown), counted) == (load["requests"], {"lost": 0, "truncated": 0, "incomplete": 0}), \
        head.read_text() if head.exists() else "the flow agent printed nothing"
    assert set(memory) == {"flow", "latency"}, memory
    for name, samples in memory.items():
        assert len(samples) >= SOAK_S // 10, samples
        assert samples[-1][2] <= samples[1][2], (name, samples)
