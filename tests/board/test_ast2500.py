"""The BMC path on the emulated AST2500: for each kernel (tools/arm/kernel:
Debian's linux-source 5.10 and 6.12 built with aspeed_g5_defconfig and
nltrace's config fragment, full DWARF, no BTF), `nltrace build --target
armv6` against its vmlinux, then ONE boot under qemu-system-arm -M
ast2500-evb (tools/arm/boot --kernel) that runs the agent's --check, then
the agent with the BPF JIT on and then off, each time with
tests/clients/workload.sh, then the BMC's own netlink users
(tests/clients/bmcnl.c). The streams come back over the serial console and
are read here with `nltrace flow/latency --input`. `make test-board` runs it.

The trees are compared with the x86 agent's for the same workload, which
tests/vm/test_agent.py leaves in $NLTRACE_VM_OUT/agent-x86/reference.json.

KNOWN_GAPS are the checks these kernels fail today (issue 13), each marked
as an expected failure with its cause: strict, so a fixed gap fails the run
until its line goes.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from harness.shapes import NLLOAD_SENDS, check_agent_text, nlload_sends, summaries  # noqa: E402
from harness.tracer import render  # noqa: E402
from nltrace.decode import AF_MCTP  # noqa: E402

CACHE = os.path.join(os.environ.get("NLTRACE_CACHE", os.path.join(ROOT, ".cache")), "arm")
REFERENCE = os.path.join(os.environ.get("NLTRACE_VM_OUT", os.path.join(ROOT, ".cache", "vm-out")),
                         "agent-x86", "reference.json")
MAX_AGENT_BYTES = 1_500_000
BOOT_TIMEOUT_S = 900
KERNELS = ("6.12", "5.10")
# (test, kernel) -> why it fails there today
KNOWN_GAPS = {
    **{(test, "5.10"): "5.10: a request's tree never completes once netlink_ack ran in it (the "
       "agent counts it incomplete and drops it), so requests answered by an ack are missing"
       for test in ("test_trees_match_x86", "test_latency_counts_exactly", "test_text_mode_and_jit_setting",
                    "test_networkd_dumps_and_notifications", "test_mctp_over_rtnetlink")},
    **{(test, "6.12"): "6.12 (aspeed): genl_family_rcv_msg_doit and the genl_op_from_* call of genl_rcv_msg's "
       "op lookup are inlined; the genl_op_from_* calls seen come from ctrl_fill_info walking a family's ops, "
       "so a genl tree gets no handler, and a CTRL_CMD_GETFAMILY the family it asked about"
       for test in ("test_trees_match_x86", "test_text_mode_and_jit_setting", "test_ncsi_over_generic_netlink")},
    ("test_networkd_dumps_and_notifications", "6.12"): "6.12: rtnetlink notifications go through "
        "netlink_broadcast_filtered, so their copies are linked as unicast, not as broadcast deliveries",
}

# Runs on the board, in /nltrace. --check's table and status; then for each
# JIT setting: the flow stream of the workload, a latency stream filtered to
# RTM_GETLINK (7 of them among 3 CTRL_CMD_GETFAMILY), the --text trees of 2
# CTRL_CMD_GETFAMILY, and the agent's peak memory.
BOARD_SCRIPT = r"""
. ./board.sh
uname -r > /out/release
./nltrace-agent --check > /out/check.txt 2>&1; echo $? > /out/check-status
for jit in 1 0; do
    echo $jit > /proc/sys/net/core/bpf_jit_enable
    ./nltrace-agent --ready-file /out/ready-flow-jit$jit -o /out/flow-jit$jit.nltrace 2> /out/flow-jit$jit.err & agent=$!
    attached /out/ready-flow-jit$jit $agent || exit 1
    sh ./workload.sh /nltrace || exit 1
    grep VmHWM /proc/$agent/status > /out/memory-jit$jit
    kill -INT $agent; wait $agent || exit 1
    ./nltrace-agent --ready-file /out/ready-latency-jit$jit --latency -c nlload --type RTM_GETLINK -o /out/latency-jit$jit.nltrace 2> /out/latency-jit$jit.err & agent=$!
    attached /out/ready-latency-jit$jit $agent || exit 1
    ./nlload get --count 7 > /dev/null
    ./nlload genl --count 3 > /dev/null
    kill -INT $agent; wait $agent || exit 1
    ./nltrace-agent --ready-file /out/ready-text-jit$jit --text -c nlload > /out/text-jit$jit.txt 2> /out/text-jit$jit.err & agent=$!
    attached /out/ready-text-jit$jit $agent || exit 1
    ./nlload genl --count 2 > /dev/null
    kill -INT $agent; wait $agent || exit 1
    cat /proc/sys/net/core/bpf_jit_enable > /out/jit-after-jit$jit
done
# The BMC's own netlink users (tests/clients/bmcnl.c), JIT on: networkd's
# dumps and the notifications of an address added and deleted, an NC-SI
# request, MCTP's link, address and route.
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
"""


def board_kernel(version):
    """The directory tools/arm/kernel builds VERSION into (cached: fast once built)."""
    done = subprocess.run([os.path.join(ROOT, "tools", "arm", "kernel"), version], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def nltrace_build(kernel, out, *extra):
    return subprocess.run([sys.executable, "-m", "nltrace", "build", "--target", "armv6",
                           "--vmlinux", os.path.join(kernel, "vmlinux"),
                           "--sysroot", os.path.join(CACHE, "sysroot"), "-o", str(out), *extra],
                          capture_output=True, text=True)


@pytest.fixture(autouse=True)
def known_gap(request):
    """Marks this test as an expected failure where KNOWN_GAPS says so."""
    kernel = getattr(request.node, "callspec", None) and request.node.callspec.params.get("board")
    why = KNOWN_GAPS.get((request.node.originalname, kernel))
    if why:
        request.node.add_marker(pytest.mark.xfail(reason=why, strict=True))


@pytest.fixture(scope="module", params=KERNELS)
def board(request, tmp_path_factory):
    """Build for one kernel, boot it once, and return the directory the board's files came back to."""
    kernel = board_kernel(request.param)
    payload = tmp_path_factory.mktemp("payload")
    build = nltrace_build(kernel, payload)
    assert build.returncode == 0, build.stderr
    assert "the agent's required options are set" in build.stderr, build.stderr
    for client in (os.path.join(ROOT, "bench", "nlload.c"), os.path.join(ROOT, "tests", "clients", "bmcnl.c")):
        cc = subprocess.run(["arm-linux-gnueabi-gcc", "-O2", "-Wall", "-static", "-o",
                             str(payload / os.path.basename(client)[:-2]), client], capture_output=True, text=True)
        assert cc.returncode == 0, cc.stderr
    shutil.copy(os.path.join(ROOT, "tests", "clients", "workload.sh"), payload)
    script = tmp_path_factory.mktemp("script") / "run.sh"
    script.write_text(BOARD_SCRIPT)
    out = tmp_path_factory.mktemp("board")
    boot = subprocess.run([os.path.join(ROOT, "tools", "arm", "boot"), "--kernel", kernel, "--jit", "on",
                           "--timeout", str(BOOT_TIMEOUT_S), "--payload", str(payload),
                           "--out", str(out), str(script)], capture_output=True, text=True)
    assert boot.returncode == 0, boot.stdout[-4000:] + boot.stderr[-2000:]
    shutil.copy(payload / "nltrace-agent", out)
    return out


@pytest.mark.parametrize("version", KERNELS)
def test_build_refuses_the_stock_config(version, tmp_path):
    """The kernel's own aspeed_g5_defconfig, without nltrace's fragment: nltrace
    build refuses it, naming what is missing and the fragment."""
    kernel = board_kernel(version)
    done = nltrace_build(kernel, tmp_path, "--config", os.path.join(kernel, "stock.config"))
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


def bmc_trees(board):
    trees, summary_line = render("flow", board / "bmc.nltrace")
    assert ", 0 lost," in summary_line, summary_line
    return trees


def test_networkd_dumps_and_notifications(board):
    """A phosphor-networkd-like client: its bind names the six groups, its
    four dumps are named and handled, and each notification of `ip addr
    add` and `ip addr del` reached it: one broadcast copy per message it read."""
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
    assert len(copies) == len(networkd["notifications"]) and not any(d["dropped"] for d in copies)
    assert "RTM_NEWADDR" in networkd["notifications"] and networkd["notifications"][-1] == "RTM_DELADDR"


def test_ncsi_over_generic_netlink(board):
    """NCSI_CMD_PKG_INFO, named by family and command, with what the kernel
    answered (the evb's MAC is not in NC-SI mode: the kernel has no NC-SI
    device for it, and the tree shows that errno)."""
    answer = json.loads((board / "ncsi.json").read_text())
    assert answer["family"] > 0, answer   # the NCSI family is registered (CONFIG_NET_NCSI)
    (request,) = [t for t in bmc_trees(board) if t["comm"] == "bmcnl" and t["root"]["func"] == "netlink_sendmsg"
                  and t["message"]["family"] == "NCSI"]
    assert request["message"]["cmd_name"] == "NCSI_CMD_PKG_INFO"
    print(f"NCSI_CMD_PKG_INFO on eth0: {answer['pkg_info']}, tree error {request['error']}")
    if answer["pkg_info"] < 0:
        assert request["error"]["errno"] == -answer["pkg_info"], request
    else:
        assert not request["error"], request


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
