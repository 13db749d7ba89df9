"""Secrets out of records (nltrace/redact.py): messages built with pyroute2's
classes where it has them (WireGuard, nlctrl), packed by hand from the uapi
headers' numbers where it has none (xfrm, MACsec, nl80211, SEG6, TIPC),
wrapped into records as the kernel program writes them."""

import base64
import json
import re
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST, ctrlmsg
from pyroute2.netlink.generic.wireguard import wgmsg
from pyroute2.netlink.nl80211 import nl80211cmd

from nltrace import redact, records, uapi
from nltrace.decode import decode_message
from nltrace.sources.stream import StreamSource
from nltrace.trees import assemble

GENERIC, XFRM, ROUTE = 16, 6, 0          # NETLINK_*: redact.py reads them from pyroute2
MSG_AT = records.ffi.offsetof("struct nlt_record", "msg")
CAPTURE = records.C.NLT_MSG_CAPTURE

PRIVATE = bytes(range(0x40, 0x60))          # 32 bytes each, none a MARK byte
PRESHARED = bytes(range(0x60, 0x80))
PUBLIC = bytes(range(0x80, 0xa0))
ENC_KEY = bytes(range(0xa0, 0xb0))          # cbc(aes): 128 bits
AUTH_KEY = bytes(range(0xb0, 0xd0))         # hmac(sha256): 256 bits
WG_ID, OTHER_ID = 0x20, 0x21                # dynamic genl ids, as a kernel gives them


def enum(header, name):
    """A value from the uapi headers, looked up here apart from redact.py's own lookup."""
    for values in uapi.enums(header):
        if name in values:
            return values[name]
    raise KeyError(name)


# --- building messages and records ---

def nla(nla_type, payload, flags=0):
    length = 4 + len(payload)
    return struct.pack("=HH", length, nla_type | flags) + payload + bytes(-length % 4)


def nlmsg(msg_type, body, flags=NLM_F_REQUEST, seq=1):
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 4242) + body + bytes(-len(body) % 4)


def genl(msg_type, cmd, attrs, flags=NLM_F_REQUEST | NLM_F_ACK, seq=1):
    return nlmsg(msg_type, bytes([cmd, 1, 0, 0]) + attrs, flags, seq)


def wg_set_device(msg_type=WG_ID, seq=7, flags=NLM_F_REQUEST | NLM_F_ACK, cmd="WG_CMD_SET_DEVICE", peer=True):
    """WG_CMD_SET_DEVICE as pyroute2's WireGuard.set() builds it: a private
    key, and a peer with a preshared key (160 bytes; 72 without the peer)."""
    msg = wgmsg()
    msg["cmd"], msg["version"] = enum("linux/wireguard.h", cmd), 1
    one = {"attrs": [["WGPEER_A_PUBLIC_KEY", base64.b64encode(PUBLIC)],
                     ["WGPEER_A_PRESHARED_KEY", base64.b64encode(PRESHARED)],
                     ["WGPEER_A_FLAGS", 0]]}
    msg["attrs"] = [["WGDEVICE_A_IFNAME", "wg0"], ["WGDEVICE_A_PRIVATE_KEY", base64.b64encode(PRIVATE)],
                    ["WGDEVICE_A_LISTEN_PORT", 51820]] + ([["WGDEVICE_A_PEERS", [one]]] if peer else [])
    msg["header"]["type"], msg["header"]["flags"], msg["header"]["sequence_number"] = msg_type, flags, seq
    msg.encode()
    return bytes(msg.data)


def ctrl_newfamily(family_id, name, cmd="CTRL_CMD_NEWFAMILY"):
    msg = ctrlmsg()
    msg["cmd"], msg["version"] = enum("linux/genetlink.h", cmd), 2
    msg["attrs"] = [["CTRL_ATTR_FAMILY_NAME", name], ["CTRL_ATTR_FAMILY_ID", family_id]]
    msg["header"]["type"], msg["header"]["flags"] = 0x10, 0
    msg.encode()
    return bytes(msg.data)


def record(data, protocol, family="", total=None, flags=0, stale=b""):
    """A struct nlt_record holding the head of data, as tree.bpf.h's
    capture_skb writes it; stale: what an earlier message of the thread
    left in msg[] past it."""
    rec = records.ffi.new("struct nlt_record *")
    rec.ts_ns, rec.pid, rec.tid, rec.protocol, rec.flags = 1000, 42, 42, protocol, flags
    rec.genl_family = family.encode()
    rec.comm = b"client"
    rec.msg_len = min(len(data), CAPTURE)
    rec.msg_total_len = len(data) if total is None else total
    msg = data[:CAPTURE] + stale[min(len(data), CAPTURE):CAPTURE]
    records.ffi.memmove(rec.msg, msg, len(msg))
    rec.nr_nodes = 1
    rec.nodes[0].func = records.C.NLT_FN_netlink_sendmsg
    rec.nodes[0].start_ns, rec.nodes[0].end_ns, rec.nodes[0].ret = 1000, 2000, len(data)
    return bytes(records.ffi.buffer(rec))


def capture(raw):
    return records.capture_of(records.parse_record(raw)).data


def only_secrets_changed(before, after, secrets):
    """after is before with exactly the bytes of secrets (each found in
    before) overwritten by MARK, nothing else."""
    expected = bytearray(before)
    for secret in secrets:
        for found in re.finditer(re.escape(secret), before):
            expected[found.start():found.end()] = redact.MARK * len(secret)
    assert after == bytes(expected)
    for secret in secrets:
        assert secret not in after


def hidden(data, *secrets):
    return all(s not in data for s in secrets)


# --- the table's numbers ---

def test_the_table_reads_its_numbers_from_the_headers_and_they_agree_with_pyroute2():
    n = redact.numbers()
    wg = dict((name, i) for i, (name, _) in enumerate(wgmsg.nla_map))
    peer = dict((name, i) for i, (name, _) in enumerate(wgmsg.wgdevice_peer.nla_map))
    assert n.genl["wireguard"] == {wg["WGDEVICE_A_PRIVATE_KEY"]: (0, None),
                                   wg["WGDEVICE_A_PEERS"]: (None, ({peer["WGPEER_A_PRESHARED_KEY"]: (0, None)},))}
    nl80211 = {name: i for i, (name, _) in enumerate(nl80211cmd.nla_map)}
    for name in ("NL80211_ATTR_KEY_DATA", "NL80211_ATTR_KEY", "NL80211_ATTR_KEYS", "NL80211_ATTR_PMK",
                 "NL80211_ATTR_SAE_PASSWORD", "NL80211_ATTR_FILS_KEK", "NL80211_ATTR_FILS_ERP_RRK",
                 "NL80211_ATTR_REKEY_DATA"):
        assert nl80211[name] == enum("linux/nl80211.h", name) and nl80211[name] in n.genl["nl80211"], name
    # the family names are the kernel's: each header's *_GENL_NAME
    defines = {}
    for header in ("linux/wireguard.h", "linux/if_macsec.h", "linux/nl80211.h", "linux/seg6_genl.h",
                   "linux/tipc_netlink.h"):
        text = uapi._preprocess(header, "-dM")
        defines.update(re.findall(r'^#define (\w+_GENL(?:_V2)?_NAME)\s+"([^"]+)"', text, re.M))
    assert set(redact.SECRETS) == {defines[k] for k in ("WG_GENL_NAME", "MACSEC_GENL_NAME", "NL80211_GENL_NAME",
                                                        "SEG6_GENL_NAME", "TIPC_GENL_V2_NAME")}
    # xfrm: the messages by their uapi names, the fixed headers and where each key starts
    types = {name: t for t, name in uapi.xfrm_types().items()}
    assert {t: h.get() for t, h in n.xfrm_headers.items()} == {
        types["XFRM_MSG_NEWSA"]: 224, types["XFRM_MSG_UPDSA"]: 224, types["XFRM_MSG_DELSA"]: 24}
    assert {t: off.get() for t, (off, _) in n.xfrm.items()} == {
        enum("linux/xfrm.h", "XFRMA_ALG_AUTH"): 64 + 4, enum("linux/xfrm.h", "XFRMA_ALG_CRYPT"): 64 + 4,
        enum("linux/xfrm.h", "XFRMA_ALG_AEAD"): 64 + 4 + 4, enum("linux/xfrm.h", "XFRMA_ALG_AUTH_TRUNC"): 64 + 4 + 4}


def test_headers_that_cannot_be_read_are_an_error_not_silence():
    with pytest.raises(redact.CannotRedact, match="WGDEVICE_A_NOPE"):
        redact._enum_values(("linux/wireguard.h",), ("WGDEVICE_A_NOPE",))
    with pytest.raises(redact.CannotRedact):
        redact._enum_values(("linux/no-such-header.h",), ("WGDEVICE_A_PRIVATE_KEY",))
    # a struct that cannot be read: the whole payload, rather than less
    assert redact._Later("linux/no-such-header.h", "struct x", "key", fallback=0).get() == 0


# --- each family ---

def test_wireguard_set_device_loses_its_keys_and_nothing_else():
    data = wg_set_device()
    raw = record(data, GENERIC, "wireguard")
    out = redact.redactor()(raw)
    only_secrets_changed(raw, out, [PRIVATE, PRESHARED])
    assert PUBLIC in out
    # lengths kept: pyroute2 still reads it, the keys now MARK
    msg = wgmsg(capture(out))
    msg.decode()
    assert base64.b64decode(msg.get_attr("WGDEVICE_A_PRIVATE_KEY")) == redact.MARK * 32
    (peer,) = msg.get_attr("WGDEVICE_A_PEERS")
    assert base64.b64decode(peer.get_attr("WGPEER_A_PRESHARED_KEY")) == redact.MARK * 32
    assert base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY")) == PUBLIC
    assert msg.get_attr("WGDEVICE_A_LISTEN_PORT") == 51820
    assert decode_message(capture(out), GENERIC, "wireguard") == decode_message(data, GENERIC, "wireguard")


def test_a_reply_is_known_by_the_family_its_request_named():
    """A GET_DEVICE reply (read in a netlink_recvmsg tree, whose record names
    no family) holds the keys: its id is learned from the request's record."""
    redact_ = redact.redactor()
    request = record(genl(WG_ID, enum("linux/wireguard.h", "WG_CMD_GET_DEVICE"), b"",
                          flags=NLM_F_REQUEST | NLM_F_DUMP), GENERIC, "wireguard")
    assert redact_(request) is request
    reply = record(wg_set_device(cmd="WG_CMD_GET_DEVICE", flags=NLM_F_MULTI), GENERIC)
    assert redact.redactor()(reply) is reply      # alone, its family is unknown
    only_secrets_changed(reply, redact_(reply), [PRIVATE, PRESHARED])


def test_nlctrl_replies_and_events_name_the_ids():
    redact_ = redact.redactor()
    for message in (ctrl_newfamily(OTHER_ID, "wireguard"), ctrl_newfamily(OTHER_ID, "other", "CTRL_CMD_DELFAMILY")):
        rec = record(message, GENERIC)
        assert redact_(rec) is rec
    assert OTHER_ID not in redact_.redactor.families       # DELFAMILY took it back
    assert redact_(record(ctrl_newfamily(OTHER_ID, "wireguard"), GENERIC))
    reply = record(wg_set_device(msg_type=OTHER_ID, flags=NLM_F_MULTI), GENERIC)
    only_secrets_changed(reply, redact_(reply), [PRIVATE, PRESHARED])
    # ... and a live run starts knowing the kernel's own (no netlink here: none)
    seeded = redact.redactor(families={OTHER_ID: "wireguard"})
    only_secrets_changed(reply, seeded(reply), [PRIVATE, PRESHARED])


def test_the_kernels_family_list_reads_without_raising():
    families = redact.kernel_genl_families()
    assert all(isinstance(i, int) and i > 0x10 and isinstance(name, str) for i, name in families.items())


def test_an_error_ack_echoes_the_request_and_loses_its_keys():
    redact_ = redact.redactor(families={WG_ID: "wireguard"})
    request = wg_set_device()
    ack = nlmsg(2, struct.pack("=i", -19) + request, flags=0)       # NLMSG_ERROR, ENODEV
    raw = record(ack, GENERIC)
    only_secrets_changed(raw, redact_(raw), [PRIVATE, PRESHARED])
    capped = record(nlmsg(2, struct.pack("=i", -19) + request[:16], flags=NLM_F_CAPPED), GENERIC)
    assert redact_(capped) is capped


def test_macsec_sa_key():
    h = "linux/if_macsec.h"
    key, keyid = bytes(range(0x10, 0x20)), bytes(range(0xe0, 0xf0))
    sa = (nla(enum(h, "MACSEC_SA_ATTR_AN"), b"\x00") + nla(enum(h, "MACSEC_SA_ATTR_PN"), struct.pack("=I", 1))
          + nla(enum(h, "MACSEC_SA_ATTR_ACTIVE"), b"\x01") + nla(enum(h, "MACSEC_SA_ATTR_KEYID"), keyid)
          + nla(enum(h, "MACSEC_SA_ATTR_KEY"), key))
    data = genl(0x22, enum(h, "MACSEC_CMD_ADD_TXSA"),
                nla(enum(h, "MACSEC_ATTR_IFINDEX"), struct.pack("=I", 5)) + nla(enum(h, "MACSEC_ATTR_SA_CONFIG"), sa,
                                                                            NLA_F_NESTED))
    raw = record(data, GENERIC, "macsec")
    out = redact.redactor()(raw)
    only_secrets_changed(raw, out, [key])
    assert keyid in out
    assert decode_message(capture(out), GENERIC, "macsec") == decode_message(data, GENERIC, "macsec")


def test_nl80211_keys_top_level_nested_and_in_arrays():
    h = "linux/nl80211.h"
    tk, wep, pmk, kek, kck = (bytes(range(b, b + 16)) for b in (0x10, 0x30, 0x50, 0x70, 0x90))
    key = nla(enum(h, "NL80211_KEY_DATA"), tk) + nla(enum(h, "NL80211_KEY_IDX"), b"\x01")
    keys = nla(1, nla(enum(h, "NL80211_KEY_DATA"), wep), NLA_F_NESTED)
    rekey = nla(enum(h, "NL80211_REKEY_DATA_KEK"), kek) + nla(enum(h, "NL80211_REKEY_DATA_KCK"), kck)
    attrs = (nla(enum(h, "NL80211_ATTR_IFINDEX"), struct.pack("=I", 3))
             + nla(enum(h, "NL80211_ATTR_KEY"), key, NLA_F_NESTED)
             + nla(enum(h, "NL80211_ATTR_KEYS"), keys, NLA_F_NESTED)
             + nla(enum(h, "NL80211_ATTR_PMK"), pmk)
             + nla(enum(h, "NL80211_ATTR_REKEY_DATA"), rekey, NLA_F_NESTED))
    data = genl(0x23, enum(h, "NL80211_CMD_NEW_KEY"), attrs)
    raw = record(data, GENERIC, "nl80211")
    only_secrets_changed(raw, redact.redactor()(raw), [tk, wep, pmk, kek, kck])


def test_seg6_hmac_secret_and_tipc_node_key():
    secret = b"srv6-hmac-secret-0123456789"
    seg6 = genl(0x24, enum("linux/seg6_genl.h", "SEG6_CMD_SETHMAC"),
                nla(enum("linux/seg6_genl.h", "SEG6_ATTR_HMACKEYID"), struct.pack("=I", 7))
                + nla(enum("linux/seg6_genl.h", "SEG6_ATTR_SECRET"), secret))
    raw = record(seg6, GENERIC, "SEG6")
    only_secrets_changed(raw, redact.redactor()(raw), [secret])

    tipc_key = bytes(range(0x30, 0x54))         # 32-byte key and 4-byte salt
    aead = b"gcm(aes)".ljust(32, b"\0") + struct.pack("=I", len(tipc_key)) + tipc_key   # struct tipc_aead_key
    node = nla(enum("linux/tipc_netlink.h", "TIPC_NLA_NODE_KEY"), aead)
    tipc = genl(0x25, enum("linux/tipc_netlink.h", "TIPC_NL_KEY_SET"),
                nla(enum("linux/tipc_netlink.h", "TIPC_NLA_NODE"), node, NLA_F_NESTED))
    raw = record(tipc, GENERIC, "TIPCv2")
    out = redact.redactor()(raw)
    only_secrets_changed(raw, out, [tipc_key])
    assert b"gcm(aes)" in out                   # the algorithm's name and the key's length stay


def xfrm_algo(name, key, *more):
    """struct xfrm_algo (more: xfrm_algo_auth's trunc_len, xfrm_algo_aead's icv_len)."""
    return name.ljust(64, b"\0") + struct.pack("=I", len(key) * 8) + b"".join(struct.pack("=I", m) for m in more) + key


def xfrm_newsa(msg_type="XFRM_MSG_NEWSA"):
    h = "linux/xfrm.h"
    info = bytearray(224)                       # struct xfrm_usersa_info: daddr, spi, ...
    info[0:4], info[60:64] = bytes([10, 0, 0, 2]), b"\x00\x00\x10\x00"
    attrs = (nla(enum(h, "XFRMA_ALG_AUTH_TRUNC"), xfrm_algo(b"hmac(sha256)", AUTH_KEY, 128))
             + nla(enum(h, "XFRMA_ALG_CRYPT"), xfrm_algo(b"cbc(aes)", ENC_KEY)))
    types = {name: t for t, name in uapi.xfrm_types().items()}
    return nlmsg(types[msg_type], bytes(info) + attrs, flags=NLM_F_REQUEST | NLM_F_ACK)


def test_xfrm_newsa_and_updsa_keys_but_not_the_algorithm_names():
    for msg_type in ("XFRM_MSG_NEWSA", "XFRM_MSG_UPDSA"):
        data = xfrm_newsa(msg_type)
        out = redact.redact_messages(data, XFRM)
        only_secrets_changed(data, out, [AUTH_KEY, ENC_KEY])
        assert b"hmac(sha256)" in out and b"cbc(aes)" in out
        assert decode_message(out[:CAPTURE], XFRM) == decode_message(data[:CAPTURE], XFRM)


def test_xfrm_delsa_event_and_aead():
    h = "linux/xfrm.h"
    aead_key = bytes(range(0x10, 0x24))         # rfc4106(gcm(aes)): 16-byte key, 4-byte salt
    sa_id = bytes(24)                           # struct xfrm_usersa_id
    attrs = (nla(enum(h, "XFRMA_SA"), bytes(224))
             + nla(enum(h, "XFRMA_ALG_AEAD"), xfrm_algo(b"rfc4106(gcm(aes))", aead_key, 128)))
    types = {name: t for t, name in uapi.xfrm_types().items()}
    data = nlmsg(types["XFRM_MSG_DELSA"], sa_id + attrs, flags=0)
    only_secrets_changed(data, redact.redact_messages(data, XFRM), [aead_key])
    # an ack of a refused NEWSA echoes it whole
    ack = nlmsg(2, struct.pack("=i", -17) + xfrm_newsa(), flags=0)
    only_secrets_changed(ack, redact.redact_messages(ack, XFRM), [AUTH_KEY, ENC_KEY])


def test_xfrm_keys_lie_past_a_records_capture():
    """struct xfrm_usersa_info is 224 bytes: a NEWSA's first attribute
    starts at byte 240 of 256 captured, its key past the capture."""
    data = xfrm_newsa()
    raw = record(data, XFRM)
    assert hidden(raw, AUTH_KEY, ENC_KEY) and records.parse_record(raw).msg_len == CAPTURE
    assert redact.redactor()(raw) is raw


# --- captures cut, batches, malformed lengths ---

def test_a_secret_cut_by_the_capture_end_is_overwritten_up_to_it():
    data = wg_set_device()
    at = data.index(PRIVATE)
    for cut in (at + 1, at + 20, data.index(PRESHARED) + 5):
        raw = record(data[:cut], GENERIC, "wireguard", total=len(data))     # --snaplen cut
        out = redact.redactor()(raw)
        expected = bytearray(capture(raw))
        for secret in (PRIVATE, PRESHARED):
            start = data.index(secret)
            expected[start:min(start + 32, cut)] = redact.MARK * len(expected[start:min(start + 32, cut)])
        assert capture(out) == bytes(expected)
        assert not any(PRIVATE[i:i + 4] in out or PRESHARED[i:i + 4] in out for i in range(29))


def test_every_message_of_a_buffer():
    first, second = wg_set_device(seq=1, peer=False), wg_set_device(seq=2)
    raw = record(first + second, GENERIC, "wireguard")
    out = redact.redactor()(raw)
    only_secrets_changed(raw, out, [PRIVATE, PRESHARED])
    assert capture(out).count(redact.MARK * 32) == 3
    # 320 bytes: the capture ends inside the second one's peers, its preshared key past it
    raw = record(second + second, GENERIC, "wireguard")
    out = redact.redactor()(raw)
    only_secrets_changed(raw, out, [PRIVATE, PRESHARED])
    assert capture(out).count(redact.MARK * 32) == 3
    # a NOOP first: the family is the first dispatched message's
    raw = record(nlmsg(1, b"") + first, GENERIC, "wireguard")
    only_secrets_changed(raw, redact.redactor()(raw), [PRIVATE])


def test_malformed_lengths_raise_nothing_and_overwrite_what_cannot_be_read():
    """A length under a header's, or past what holds it, ends the walk (as
    it ends the kernel's): from there to the end of what holds it, all is
    overwritten, since nothing says it holds no secret."""
    data = wg_set_device()
    private = data.index(PRIVATE) - 4           # WGDEVICE_A_PRIVATE_KEY's header
    peer = data.index(PUBLIC) - 8               # the first peer's, in WGDEVICE_A_PEERS
    # (where, what length, bytes kept as they were, where MARK begins)
    cases = [(0, "=I", n, 0, 4) for n in (0, 3, 15, 0xffffffff)]             # nlmsg_len: all of it
    cases += [(0, "=I", 17, 16, 20)]            # a message too short for its genl header, then
    #                                             a "message" at 20 that runs past the buffer
    cases += [(private, "=H", n, private, private + 4) for n in (0, 1, 3, 0xffff)]   # nla_len
    cases += [(peer, "=H", n, peer, peer + 4) for n in (0, 2, 0xffff)]               # a nest's element
    redact_ = redact.redactor()
    good = redact_(record(data, GENERIC, "wireguard"))
    for at, fmt, value, kept, marked in cases:
        bad = bytearray(data)
        struct.pack_into(fmt, bad, at, value)
        raw = record(bytes(bad), GENERIC, "wireguard")
        out = redact_(raw)
        # up to the bad length, as it was but for the keys a good message loses; from it on, MARK
        assert len(out) == len(raw), (at, value)
        assert all(o == (g if g == redact.MARK[0] else r) for o, r, g in
                   zip(out[:MSG_AT + kept], raw[:MSG_AT + kept], good[:MSG_AT + kept])), (at, value)
        assert out[MSG_AT + marked:MSG_AT + len(data)].strip(redact.MARK) == b"", (at, value)
        assert hidden(out, PRIVATE, PRESHARED), (at, value)
        records.parse_record(out)
    # a message longer than the skb the kernel had (not a cut capture): malformed
    bad = bytearray(data)
    struct.pack_into("=I", bad, 0, len(data) + 8)
    assert capture(redact_(record(bytes(bad), GENERIC, "wireguard"))) == redact.MARK * len(data)
    # an unknown family's malformed message: overwritten too
    bad = bytearray(data)
    struct.pack_into("=I", bad, 0, 8)
    assert capture(redact.redactor()(record(bytes(bad), GENERIC))) == redact.MARK * len(data)


@settings(max_examples=400, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=CAPTURE), st.sampled_from([GENERIC, XFRM, ROUTE]),
       st.sampled_from(["", "wireguard", "macsec", "nl80211", "SEG6", "TIPCv2", "nlctrl"]),
       st.integers(0, 0xffff))
def test_any_bytes_keep_their_length_and_header(data, protocol, family, msg_type):
    if len(data) >= 6:
        data = data[:4] + struct.pack("=H", msg_type) + data[6:]
    raw = record(data, protocol, family)
    out = redact.redactor(families={msg_type: family})(raw)
    assert len(out) == len(raw) and out[:MSG_AT] == raw[:MSG_AT] and out[MSG_AT + CAPTURE:] == raw[MSG_AT + CAPTURE:]
    records.parse_record(out)
    assert all(a == b or b == redact.MARK[0] for a, b in zip(raw, out))


# --- what has no secret ---

def test_records_without_secrets_come_back_as_the_same_object(recorded_stream):
    redact_ = redact.redactor(families={WG_ID: "wireguard"})
    same = [record(wg_set_device()[:20], GENERIC, "wireguard", total=160),      # its headers only
            record(genl(WG_ID, enum("linux/wireguard.h", "WG_CMD_GET_DEVICE"),
                        nla(enum("linux/wireguard.h", "WGDEVICE_A_IFNAME"), b"wg0\0")), GENERIC, "wireguard"),
            record(ctrl_newfamily(OTHER_ID, "ethtool"), GENERIC),
            record(nlmsg(18, bytes(16)), ROUTE)]
    for raw in same:
        assert redact_(raw) is raw
    source = StreamSource(recorded_stream, "flow")
    raws = list(source.records())
    source.close()
    first = [redact_(raw) for raw in raws]
    assert all(redact_(raw) is raw for raw in first)     # once clean, left alone


def test_unused_bytes_past_the_message_are_zeroed():
    """The kernel program reuses each thread's record: msg[] past msg_len
    holds the thread's earlier message (its keys too), which a stream keeps."""
    earlier = wg_set_device()
    raw = record(nlmsg(18, bytes(16)), ROUTE, stale=earlier)
    assert PRIVATE in raw
    out = redact.redactor()(raw)
    assert hidden(out, PRIVATE, PRESHARED)
    assert out[MSG_AT + 32:MSG_AT + CAPTURE] == bytes(CAPTURE - 32) and capture(out) == capture(raw)
    assert out[:MSG_AT + 32] == raw[:MSG_AT + 32] and out[MSG_AT + CAPTURE:] == raw[MSG_AT + CAPTURE:]
    # a socket's tree (msg: struct nlt_socket) too, its facts kept
    facts = struct.pack("=QIIII", 0xffff888001234000, 100, 0, 4026531840, 0)
    sock = record(facts, GENERIC, flags=records.C.NLT_REC_SOCKET, stale=earlier)
    out = redact.redactor()(sock)
    assert hidden(out, PRIVATE) and records.socket_facts(records.parse_record(out))["portid"] == 100


def test_flow_may_leave_the_unused_bytes_it_never_reads():
    flow = redact.redactor(zero_unused=False)
    stale = record(nlmsg(18, bytes(16)), ROUTE, stale=wg_set_device())
    assert flow(stale) is stale
    raw = record(wg_set_device()[:72], GENERIC, "wireguard", total=160, stale=wg_set_device())
    out = flow(raw)
    assert capture(out) == capture(redact.redactor()(raw)) and PRIVATE not in capture(out)
    assert out[MSG_AT + 72:] == raw[MSG_AT + 72:]


def test_keep_secrets_keeps_them_but_not_the_unused_bytes():
    keep = redact.redactor(keep_secrets=True)
    raw = record(wg_set_device(), GENERIC, "wireguard")
    assert keep(raw) is raw and PRIVATE in raw
    stale = record(nlmsg(18, bytes(16)), ROUTE, stale=wg_set_device())
    assert hidden(keep(stale), PRIVATE)


def test_fixture_trees_are_unchanged_and_the_cost_per_record(recorded_stream, capsys):
    source = StreamSource(recorded_stream, "flow")
    raws = list(source.records())

    def trees(rs):
        return [json.dumps(assemble(records.parse_record(r), source.symbolize), sort_keys=True) for r in rs]

    redact_ = redact.redactor()
    assert trees([redact_(r) for r in raws]) == trees(raws)
    source.close()

    def ns_per_record(fn, rs, rounds=50):
        start = time.perf_counter()
        for _ in range(rounds):
            for r in rs:
                fn(r)
        return (time.perf_counter() - start) / rounds / len(rs) * 1e9

    clean = [redact_(r) for r in raws]
    costs = {"as recorded": ns_per_record(redact.redactor(), raws), "unused bytes zero": ns_per_record(redact_, clean),
             "unused bytes left (flow)": ns_per_record(redact.redactor(zero_unused=False), raws),
             "parse_record, for scale": ns_per_record(records.parse_record, raws)}
    with capsys.disabled():
        print(f"\nredact on {len(raws)} fixture records: "
              + ", ".join(f"{what} {ns:.0f} ns/record" for what, ns in costs.items()))


def test_redact_record_and_redact_messages_alone():
    data = wg_set_device()
    raw = record(data, GENERIC, "wireguard")
    assert hidden(redact.redact_record(raw), PRIVATE, PRESHARED)
    assert hidden(redact.redact_messages(data, GENERIC, "wireguard"), PRIVATE, PRESHARED)
    assert redact.redact_messages(data, ROUTE) is data
    assert redact.redact_record(b"short") == b"short"
