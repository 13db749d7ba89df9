"""The command line as a user meets it: errors are one plain message and a
non-zero exit, never a traceback."""

import json
import os
import re
import struct
import subprocess
import sys

import pytest

from conftest import AGENT_LATENCY_STREAM
from nltrace.kernel import features


def nltrace(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "nltrace", *args], capture_output=True,
                          input=stdin, timeout=120)


def test_flow_on_a_kernel_without_kprobes_points_to_the_vm():
    if features.probe().can_trace:
        pytest.skip("this kernel can trace: the no-kprobes message cannot be shown here")
    out = nltrace("flow")
    err = out.stderr.decode()
    assert out.returncode != 0
    assert "kprobes" in err and "make demo" in err
    assert "Traceback" not in err
    doctor = nltrace("doctor")
    assert doctor.returncode != 0
    assert b"kprobes" in doctor.stdout


def test_input_renders_json_and_filters(recorded_stream):
    full = nltrace("flow", "--input", recorded_stream, "--json")
    assert full.returncode == 0, full.stderr
    trees = [json.loads(line) for line in full.stdout.splitlines()]
    assert b"trees shown, 0 lost" in full.stderr
    genl = nltrace("flow", "--input", recorded_stream, "--json", "--type", "nlctrl/CTRL_CMD_GETFAMILY")
    chosen = [json.loads(line) for line in genl.stdout.splitlines()]
    assert chosen and all(t["message"]["family"] == "nlctrl" for t in chosen)
    assert len(chosen) == sum(1 for t in trees if t["message"] and t["message"]["family"] == "nlctrl"
                              and t["message"].get("cmd_name") == "CTRL_CMD_GETFAMILY")
    errors = nltrace("flow", "--input", recorded_stream, "--json", "--errors-only")
    failed = [json.loads(line) for line in errors.stdout.splitlines()]
    assert failed and all(t["error"] for t in failed)
    assert len(failed) == sum(1 for t in trees if t["error"])
    pid = trees[0]["pid"]
    only = nltrace("flow", "--input", recorded_stream, "--json", "-p", str(pid))
    assert {json.loads(line)["pid"] for line in only.stdout.splitlines()} == {pid}
    sends = nltrace("flow", "--input", recorded_stream, "--json", "--no-recv")
    assert [json.loads(line) for line in sends.stdout.splitlines()] == [
        t for t in trees if t["root"]["func"] != "netlink_recvmsg"]
    rich = nltrace("flow", "--input", recorded_stream)
    assert rich.returncode == 0 and b"netlink_sendmsg" in rich.stdout


def test_input_from_stdin(recorded_stream):
    with open(recorded_stream, "rb") as f:
        data = f.read()
    out = nltrace("flow", "--input", "-", "--json", stdin=data)
    assert out.returncode == 0
    assert out.stdout.count(b"\n") == len(nltrace("flow", "--input", recorded_stream, "--json").stdout.splitlines())


def after_header(data):
    """Offset of the first frame after the header frame."""
    return 8 + 8 + struct.unpack_from("<I", data, 12)[0]


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "not an nltrace stream"),
    (lambda d: b"GARBAGE!" + d[8:], "not an nltrace stream"),
    (lambda d: d[:20], "stream ends inside"),
    (lambda d: d[:-7], "stream ends inside"),
    (lambda d: d[:after_header(d)] + b"\x09\0\0\0\x10\0\0\0" + bytes(16), "corrupt frame"),
    (lambda d: d[:after_header(d)] + b"\x02\0\0\0\xff\xff\xff\x7f", "corrupt frame"),
    (lambda d: d[:after_header(d)] + b"\x02\0\0\0\x08\0\0\0" + bytes(8), "malformed record"),
    (lambda d: d[:12] + b"\x05\0\0\0{}[]}", "stream header is not JSON"),
    (lambda d: d[:12] + b"\x02\0\0\0{}", "format version"),
])
def test_corrupt_streams_are_reported(recorded_stream, tmp_path, damage, message):
    with open(recorded_stream, "rb") as f:
        data = f.read()
    bad = tmp_path / "bad.nltrace"
    bad.write_bytes(damage(data))
    out = nltrace("flow", "--input", str(bad), "--json")
    err = out.stderr.decode()
    assert out.returncode == 1
    assert message in err
    assert "Traceback" not in err


def frame(kind, payload):
    """A stream frame (records.h, struct nlt_frame) holding payload."""
    return struct.pack("<B3xI", kind, len(payload)) + payload


HEADER = b'{"version":3,"record_size":1376,"node_size":40'     # then its other keys and a }
HISTOGRAM = struct.pack("<QII", 1, 1, 0) + struct.pack("<IIIHHI16sIQ", 2, 1024, 0, 0, 18, 0, b"", 0, 1)


def symbols_naming_a_handler(data, name):
    """The recorded stream's header, a SYMBOLS frame naming its first
    record's handler name (JSON), then that record."""
    at = after_header(data)
    while True:
        kind, length = struct.unpack_from("<B3xI", data, at)
        if kind == 2 and struct.unpack_from("<Q", data, at + 16)[0]:
            handler = struct.unpack_from("<Q", data, at + 16)[0]
            return (data[:after_header(data)] + frame(3, b'{"%x": %s}' % (handler, name))
                    + data[at:at + 8 + length])
        at += 8 + length


# Inputs tests/host/test_fuzz.py found, each once a traceback (or a message of several lines).
@pytest.mark.parametrize("command, stream, message", [
    ("flow", lambda d: b"NLTRACE\0" + frame(1, b"null"), "stream header is not a JSON object"),
    ("flow", lambda d: b"NLTRACE\0" + frame(1, b'{"version":"\\n3"}'), "stream format version '\\n3' is not"),
    ("flow", lambda d: b"NLTRACE\0" + frame(1, HEADER + b',"mode":"flow\\n"}'), "stream mode 'flow\\n' is neither"),
    ("export", lambda d: b"NLTRACE\0" + frame(1, HEADER + b',"realtime_offset_ns":"1700000000"}'),
     "realtime_offset_ns is not a number"),
    ("flow", lambda d: b"NLTRACE\0" + frame(1, HEADER + b"}") + frame(3, b"[]"), "corrupt symbols frame"),
    ("flow", lambda d: symbols_naming_a_handler(d, b'"\\ud800"'), "corrupt symbols frame"),
    ("flow", lambda d: b"NLTRACE\0" + frame(1, HEADER + b"}") + frame(4, b"[]"), "corrupt counters frame"),
    ("latency", lambda d: b"NLTRACE\0" + frame(1, HEADER + b',"mode":"latency"}') + frame(5, HISTOGRAM),
     "corrupt histograms frame: entry 0 is in slot 1024"),
])
def test_fuzzed_streams_fail_in_one_line(recorded_stream, tmp_path, command, stream, message):
    with open(recorded_stream, "rb") as f:
        bad = tmp_path / "bad.nltrace"
        bad.write_bytes(stream(f.read()))
    args = {"flow": ["flow", "--input", str(bad), "--json"], "latency": ["latency", "--input", str(bad)],
            "export": ["export", str(bad), "--to", "pcapng", "-o", str(tmp_path / "out.pcapng")]}[command]
    out = nltrace(*args)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.startswith("nltrace: ") and err.count("\n") == 1, err
    assert message in err


def test_a_reader_that_went_away_ends_flow_quietly(recorded_stream):
    """flow into a pipe nobody reads (nltrace flow | head, once head has
    ended): status 0 and nothing on stderr but the summary."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "nltrace", "flow", "--input", recorded_stream, "--json"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr, done.stderr


def test_missing_input_file():
    out = nltrace("flow", "--input", "/nonexistent/capture")
    assert out.returncode == 1 and b"cannot read" in out.stderr and b"Traceback" not in out.stderr


def test_latency_type_resolution():
    from nltrace.filters import resolve_type
    # nlctrl's id is fixed (GENL_ID_CTRL); the lookup asks this machine's kernel
    assert resolve_type("nlctrl/CTRL_CMD_GETFAMILY", None) == {"protocol": 16, "type": 16, "cmd": 3}
    assert resolve_type("RTM_GETLINK", None) == {"protocol": 0, "type": 18, "cmd": None}
    assert resolve_type("18", "route") == {"protocol": 0, "type": 18, "cmd": None}
    for args, message in ((["--type", "nosuchfamily/1"], b"no generic netlink family"),
                          (["--type", "nlctrl/NOPE"], b"unknown command"),
                          (["--protocol", "FOO"], b"unknown protocol")):
        out = nltrace("latency", *args)
        assert out.returncode == 1 and message in out.stderr and b"Traceback" not in out.stderr


def test_latency_functions_must_name_traced_functions_of_by_function():
    out = nltrace("latency", "--by", "function", "--functions", "netlink_*,rtnl_lock")
    assert out.returncode == 1 and b"'rtnl_lock' names no traced function" in out.stderr
    assert b"Traceback" not in out.stderr
    for args in (["--functions", "netlink_dump"], ["--by", "function", "--functions", "netlink_dump",
                                                   "--agent", sys.executable]):
        out = nltrace("latency", *args)
        assert out.returncode == 2 and b"--functions" in out.stderr and b"Traceback" not in out.stderr


def test_export_of_a_cut_stream_keeps_what_it_holds(recorded_stream, tmp_path):
    """A stream cut inside a record: the export holds every tree before the
    cut, says what it wrote, and the command fails naming the cut."""
    data = open(recorded_stream, "rb").read()
    cut = tmp_path / "cut.nltrace"
    cut.write_bytes(data[:len(data) * 2 // 3])
    whole = nltrace("flow", "--input", str(cut), "--json")
    trees = [json.loads(line) for line in whole.stdout.splitlines()]
    out = tmp_path / "cut.pcapng"
    result = nltrace("export", str(cut), "--to", "pcapng", "-o", str(out))
    err = result.stderr.decode()
    assert result.returncode == 1 and "ends inside" in err and "Traceback" not in err, err
    assert f"wrote {out} (pcapng)" in err
    frames = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment"],
                            capture_output=True, text=True, check=True).stdout
    exported = {int(n) for n in re.findall(r"\btree=(\d+)", frames)}
    assert trees and exported and max(exported) == max(t["id"] for t in trees if t["message"]
                                                         and t["protocol"] != "NETLINK_KOBJECT_UEVENT")


def test_flow_writes_what_export_writes(recorded_stream, tmp_path):
    exported, written = tmp_path / "export.pcapng", tmp_path / "flow.pcapng"
    assert nltrace("export", recorded_stream, "--to", "pcapng", "-o", str(exported)).returncode == 0
    flow = nltrace("flow", "--input", recorded_stream, "--json", "--pcapng", str(written))
    assert flow.returncode == 0 and exported.read_bytes() == written.read_bytes()
    missing = nltrace("export", recorded_stream, "--to", "pcapng", "-o", str(tmp_path / "no" / "x.pcapng"))
    assert missing.returncode == 1 and missing.stderr.decode().startswith("nltrace: cannot write")


def test_latency_writes_prometheus_textfile(tmp_path):
    stream = AGENT_LATENCY_STREAM
    prom = tmp_path / "nltrace.prom"
    shown = nltrace("latency", "--input", stream, "--json", "--prometheus-textfile", str(prom), "--label", "board=bmc1")
    assert shown.returncode == 0, shown.stderr
    counts = {}   # each line is one interval's; the metrics count from the start
    for line in shown.stdout.splitlines():
        for h in json.loads(line)["histograms"]:
            counts[h["key"]] = counts.get(h["key"], 0) + h["count"]
    inf = dict(re.findall(r'_bucket\{board="bmc1",le="\+Inf",protocol="NETLINK_ROUTE",type="(\w+)"\} (\S+)',
                          prom.read_text()))
    assert counts and {k: int(float(v)) for k, v in inf.items()} == counts
    for args in (["--label", "board"], ["--prometheus", "99999"], ["--prometheus-textfile", str(tmp_path / "x" / "y")]):
        bad = nltrace("latency", "--input", stream, *args)
        assert bad.returncode == 1 and b"Traceback" not in bad.stderr, bad.stderr


def test_export_to_perfetto_says_what_it_wrote(recorded_stream, tmp_path):
    out = tmp_path / "trace.pftrace"
    done = nltrace("export", recorded_stream, "--to", "perfetto", "-o", str(out))
    trees = nltrace("flow", "--input", recorded_stream, "--json").stdout.splitlines()
    assert done.returncode == 0 and f"(perfetto): {len(trees)} trees as ".encode() in done.stderr, done.stderr
    assert out.stat().st_size > 0 and out.stat().st_mode & 0o777 == 0o600
