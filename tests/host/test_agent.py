"""The BMC path on the host: streams written by nltrace-agent on the emulated
ARMv6 board (see tests/fixtures/README.md), read the way a user reads them
from a BMC, and `nltrace build`'s checks of its input."""

import json
import os
import struct
import subprocess
import sys

from conftest import AGENT_FLOW_STREAM, AGENT_LATENCY_STREAM

FLOW, LATENCY = AGENT_FLOW_STREAM, AGENT_LATENCY_STREAM


def nltrace(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "nltrace", *args], capture_output=True,
                          input=stdin, timeout=120)


def test_arm_flow_stream_decodes_the_workload():
    out = nltrace("flow", "--input", FLOW, "--json", "-c", "nlload")
    assert out.returncode == 0, out.stderr
    assert b", 0 lost, 0 truncated, 0 incomplete" in out.stderr
    sends = [t for t in map(json.loads, out.stdout.splitlines()) if t["root"]["func"] == "netlink_sendmsg"]
    # tests/clients/workload.sh: 3 CTRL_CMD_GETFAMILY, 2 RTM_GETLINK (ENODEV), 1 dump
    assert [(t["message"]["type_name"], t["handler"], (t["error"] or {}).get("name")) for t in sends] == \
        [("nlctrl", "ctrl_getfamily", None)] * 3 + [("RTM_GETLINK", "rtnl_getlink", "ENODEV")] * 2 + \
        [("RTM_GETLINK", "rtnl_dump_ifinfo", None)]


def test_arm_latency_stream_counts_exactly():
    out = nltrace("latency", "--input", LATENCY, "--json", "--by", "message")
    assert out.returncode == 0, out.stderr
    reports = [json.loads(line) for line in out.stdout.splitlines()]
    assert {h["key"]: h["count"] for h in reports[-1]["histograms"]} == {"RTM_GETLINK": 7}
    by_function = nltrace("latency", "--input", LATENCY, "--json", "--by", "function")
    counts = {h["key"]: h["count"] for h in json.loads(by_function.stdout.splitlines()[-1])["histograms"]}
    assert counts["netlink_sendmsg"] == 7 and counts["rtnetlink_rcv_msg"] == 7


def test_a_stream_read_with_the_wrong_command_says_which():
    out = nltrace("flow", "--input", LATENCY)
    assert out.returncode == 1 and b"holds a latency stream: read it with nltrace latency --input" in out.stderr
    out = nltrace("latency", "--input", FLOW)
    assert out.returncode == 1 and b"holds a flow stream" in out.stderr


def test_a_damaged_histograms_frame_is_reported():
    data = open(LATENCY, "rb").read()
    head = len(b"NLTRACE\0")
    kind, length = struct.unpack_from("<B3xI", data, head)   # the header frame
    first = head + 8 + length
    kind, length = struct.unpack_from("<B3xI", data, first)
    assert kind == 5   # HISTOGRAMS
    damaged = data[:first] + struct.pack("<B3xI", kind, length - 8) + data[first + 8:first + 8 + length - 8]
    out = nltrace("latency", "--input", "-", stdin=damaged)
    assert out.returncode == 1 and b"corrupt histograms frame" in out.stderr
    assert b"Traceback" not in out.stderr


def test_build_refuses_what_is_not_a_kernel_image(tmp_path):
    out = nltrace("build", "--target", "armv6", "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"give either --vmlinux, or --btf with --system-map" in out.stderr
    out = nltrace("build", "--target", "x86_64", "--vmlinux", FLOW, "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and b"is not an ELF vmlinux" in out.stderr
    out = nltrace("build", "--target", "x86_64", "--vmlinux", os.path.realpath(sys.executable),
                  "-o", str(tmp_path / "out"))   # an ELF, but stripped (Debian's python)
    assert out.returncode == 1 and b"has no symbol table (stripped?)" in out.stderr
    assert b"Traceback" not in out.stderr
