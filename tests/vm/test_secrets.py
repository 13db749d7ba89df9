"""Secrets out of everything nltrace writes, on a real kernel (nltrace/redact.py).

The workload sets keys the way their tools do: an IPsec SA (`ip xfrm state
add`, then list and flush), a WireGuard device (pyroute2's WireGuard, in a
child process: a private key and a peer's preshared key set, the device read
back, and a set on a missing device, whose error ack echoes the request) and
a MACsec transmit SA (`ip macsec add`, inactive: an active one cannot be
deleted). Then no output holds any 8 bytes of
any key, in binary, hex or base64: a live `flow --json --pcapng --perfetto`,
a live `record`, and `flow --input` and `export` of a stream recorded with
--unredacted-secrets, which does hold the keys (so these tests can fail).
Every file nltrace writes is mode 0600.

IPsec keys lie past the 256 bytes a record captures (struct xfrm_usersa_info
alone is 224 bytes): their absence is checked, but only the WireGuard and
MACsec keys show that the capture reaches a key.
"""

import base64
import json
import os
import stat
import subprocess
import sys

import pytest

from harness.tracer import ROOT, Tracer, nltrace

pytestmark = pytest.mark.long     # three tracers of their own

WG_DEV, DUMMY_DEV, MACSEC_DEV = "nlt-wg0", "nlt-dummy0", "nlt-macsec0"
WINDOW = 8      # any 8 bytes of a key found is a leak


def clamped(key):
    """A Curve25519 private key as WireGuard keeps it (it clamps what it is
    given): the device read back holds these very bytes."""
    key = bytearray(key)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


KEYS = {
    "ipsec enc": os.urandom(16),           # cbc(aes)
    "ipsec auth": os.urandom(32),          # hmac(sha256)
    "wireguard private": clamped(os.urandom(32)),
    "wireguard preshared": os.urandom(32),
    "macsec": os.urandom(16),
}
SHOWN = ("wireguard private", "wireguard preshared", "macsec")     # within a record's capture
WG_PUBLIC = os.urandom(32)                  # a peer's public key: not a secret

# The WireGuard client: argv is the private, preshared and public key in hex.
WG_CLIENT = r"""
import base64, errno, sys
from pyroute2 import WireGuard
from pyroute2.netlink.exceptions import NetlinkError
dev = sys.argv[1]
private, preshared, public = (base64.b64encode(bytes.fromhex(h)).decode() for h in sys.argv[2:5])
wg = WireGuard()
wg.set(dev, private_key=private, listen_port=51820,
       peer={"public_key": public, "preshared_key": preshared, "allowed_ips": ["10.99.0.2/32"]})
(device,) = wg.info(dev)
assert device.get_attr("WGDEVICE_A_PRIVATE_KEY") == private.encode(), "the device read back lacks its key"
try:
    wg.set("nlt-no-such-wg", private_key=private)
except NetlinkError as e:
    assert e.code == errno.ENODEV, e
else:
    sys.exit("a set on a missing device succeeded")
wg.close()
"""


def run(*argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, (argv, done.stderr)
    return done


@pytest.fixture(scope="module")
def devices():
    """The WireGuard and MACsec devices the workload configures (their modules loaded before any tracer starts)."""
    for dev in (MACSEC_DEV, DUMMY_DEV, WG_DEV):
        subprocess.run(["ip", "link", "del", dev], capture_output=True)
    run("ip", "link", "add", WG_DEV, "type", "wireguard")
    run("ip", "link", "add", DUMMY_DEV, "type", "dummy")
    run("ip", "link", "add", "link", DUMMY_DEV, MACSEC_DEV, "type", "macsec")
    run("ip", "xfrm", "state", "flush")
    yield
    subprocess.run(["ip", "xfrm", "state", "flush"], capture_output=True)
    for dev in (MACSEC_DEV, DUMMY_DEV, WG_DEV):
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def workload():
    """Set every key once; the pids of the processes that did."""
    pids = {}
    steps = [
        ("ip", ["ip", "xfrm", "state", "add", "src", "10.0.0.1", "dst", "10.0.0.2", "proto", "esp", "spi", "0x1000",
                "enc", "cbc(aes)", "0x" + KEYS["ipsec enc"].hex(),
                "auth", "hmac(sha256)", "0x" + KEYS["ipsec auth"].hex()]),
        ("ip", ["ip", "xfrm", "state", "list"]),
        ("ip", ["ip", "xfrm", "state", "flush"]),
        ("wg", [sys.executable, "-c", WG_CLIENT, WG_DEV, KEYS["wireguard private"].hex(),
                KEYS["wireguard preshared"].hex(), WG_PUBLIC.hex()]),
        ("ip", ["ip", "macsec", "add", MACSEC_DEV, "tx", "sa", "0", "pn", "1", "off", "key", "01",
                KEYS["macsec"].hex()]),
        ("ip", ["ip", "macsec", "show", MACSEC_DEV]),
        ("ip", ["ip", "macsec", "del", MACSEC_DEV, "tx", "sa", "0"]),
    ]
    for what, argv in steps:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (argv, out, err)
        pids[proc.pid] = what
    return pids


def forms(key):
    """What of key would show it: each WINDOW bytes of it, raw and in hex
    (either case, with or without colons), and base64 of it at each offset."""
    out = set()
    for i in range(len(key) - WINDOW + 1):
        part = key[i:i + WINDOW]
        out |= {part, part.hex().encode(), part.hex().upper().encode(), part.hex(":").encode()}
    for i in range(3):
        out.add(base64.b64encode(key[i:])[:12])
    return out


def leaks(data, names=tuple(KEYS)):
    """The keys (by name) of which data holds any form."""
    return sorted(name for name in names if any(form in data for form in forms(KEYS[name])))


def private_file(path):
    return stat.S_IMODE(os.stat(path).st_mode) == 0o600


def render(*argv):
    done = subprocess.run(nltrace(*argv), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout, done.stderr


def trees_of(lines):
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_live_flow_json_pcapng_and_perfetto_hold_no_key(devices, tmp_path):
    pcap, perfetto = tmp_path / "live.pcapng", tmp_path / "live.pftrace"
    tracer = Tracer(nltrace("flow", "--json", "--pcapng", str(pcap), "--perfetto", str(perfetto)), parse=str)
    try:
        pids = workload()
        tracer.sync()
    finally:
        assert tracer.stop() == 0, tracer.stderr
    text = "\n".join(tracer.stdout + tracer.stderr).encode()
    assert leaks(text) == [] and leaks(pcap.read_bytes()) == [] and leaks(perfetto.read_bytes()) == []
    assert private_file(pcap) and private_file(perfetto)

    # what was checked held the messages that carry the keys
    mine = [t for t in trees_of(tracer.stdout) if t["pid"] in pids and t["message"]]
    names = {(t["message"].get("family") or t["protocol"], t["message"]["type_name"], t["message"].get("cmd_name"))
             for t in mine}
    assert ("NETLINK_XFRM", "XFRM_MSG_NEWSA", None) in names, names
    assert ("wireguard", "wireguard", "WG_CMD_SET_DEVICE") in names, names
    assert ("macsec", "macsec", "MACSEC_CMD_ADD_TXSA") in names, names
    (newsa,) = [t for t in mine if t["message"]["type_name"] == "XFRM_MSG_NEWSA" and t["root"]["func"] ==
                "netlink_sendmsg"]
    assert newsa["message"]["truncated"] and newsa["message"]["len"] > 256     # its keys past the capture
    wg_reads = [t for t in mine if pids[t["pid"]] == "wg" and t["root"]["func"] == "netlink_recvmsg"]
    assert wg_reads, "the client's reads (the device read back, the error ack) were not traced"


@pytest.fixture(scope="module")
def recorded(devices, tmp_path_factory):
    """Streams of the workload recorded live: (redacted, kept with --unredacted-secrets)."""
    out = tmp_path_factory.mktemp("secrets")
    paths = []
    for name, extra in (("redacted.nltrace", ()), ("kept.nltrace", ("--unredacted-secrets",))):
        path = out / name
        record = Tracer(nltrace("record", "-o", str(path), *extra), parse=str)
        try:
            workload()
        finally:
            assert record.stop() == 0, record.stderr
        assert leaks("\n".join(record.stderr).encode()) == []
        paths.append(path)
    return paths


def test_a_recorded_stream_holds_no_key_and_is_private(recorded):
    redacted, _ = recorded
    assert leaks(redacted.read_bytes()) == []
    assert private_file(redacted)
    stdout, _ = render("flow", "--input", str(redacted), "--json")
    families = {(t["message"] or {}).get("family") for t in trees_of(stdout.splitlines())}
    assert {"wireguard", "macsec"} <= families, families


def test_unredacted_secrets_keeps_them(recorded, tmp_path):
    """The control: with --unredacted-secrets the keys are there (so the
    captures reach them, and the other tests can fail)."""
    _, kept = recorded
    assert set(SHOWN) <= set(leaks(kept.read_bytes()))
    assert private_file(kept)
    pcap = tmp_path / "kept.pcapng"
    render("flow", "--input", str(kept), "--json", "--pcapng", str(pcap), "--unredacted-secrets")
    assert set(SHOWN) <= set(leaks(pcap.read_bytes()))


def test_flow_and_export_of_a_stream_that_kept_them_hold_no_key(recorded, tmp_path):
    """flow --input and export redact too: the stream's own records tell
    them which generic netlink family each id is."""
    _, kept = recorded
    pcap, perfetto, exported = tmp_path / "in.pcapng", tmp_path / "in.pftrace", tmp_path / "export.pcapng"
    stdout, stderr = render("flow", "--input", str(kept), "--json", "--pcapng", str(pcap), "--perfetto", str(perfetto))
    assert leaks((stdout + stderr).encode()) == []
    assert leaks(pcap.read_bytes()) == [] and leaks(perfetto.read_bytes()) == []
    render("export", str(kept), "--to", "pcapng", "-o", str(exported))
    assert leaks(exported.read_bytes()) == []
    assert all(private_file(p) for p in (pcap, perfetto, exported))
