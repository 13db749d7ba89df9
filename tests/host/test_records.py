"""The record layout and the probe catalogue agree across C and Python."""

import re

from nltrace import records
from nltrace.catalogue import CATALOGUE, GENL_DISPATCH, ONCE_PER_SOCKET, TREE_FUNCTIONS, needed
from nltrace.bpf import PROGRAMS, bcc_text


def program_names(source):
    """BPF programs a source defines, with its probe macros expanded."""
    names = set(re.findall(r"NLT_(?:KPROBE|KRETPROBE|RAW_TRACEPOINT)\((\w+)\)", source))
    for fn in re.findall(r"^NLT_FUNCTION\((\w+),", source, re.M):
        names |= {f"enter_{fn}", f"exit_{fn}"}
    return names


def test_every_catalogue_probe_has_its_programs_in_each_mode():
    wanted = {name for probe in CATALOGUE for name in probe.programs}
    for mode in PROGRAMS:
        defined = program_names(bcc_text(mode))   # the program with the shared walk pasted in
        assert wanted - defined == set(), mode
        # and no program is left without a catalogue entry to attach it
        assert defined - wanted == set(), mode


def test_each_mode_keeps_its_own_output_map():
    flow, latency = bcc_text("flow"), bcc_text("latency")
    assert "NLT_RINGBUF(events" in flow and "NLT_RINGBUF(events" not in latency
    assert "NLT_PERCPU_HASH(hists" in latency and "NLT_PERCPU_HASH(hists" not in flow
    assert '#include "tree.bpf.h"' not in flow + latency   # BCC gets one text


def test_catalogue_covers_the_enum_once():
    assert [p.name for p in TREE_FUNCTIONS] == [records.FUNC_NAMES[i] for i in sorted(records.FUNC_NAMES)]
    assert max(records.FUNC_NAMES) < records.C.NLT_FN_MAX
    assert ONCE_PER_SOCKET <= {p.name for p in TREE_FUNCTIONS}


def test_genl_op_captures_attach_only_where_the_genl_dispatch_is_inlined():
    stand_ins = [p for p in CATALOGUE if p.stands_in_for == GENL_DISPATCH]
    assert {p.name for p in stand_ins} == {"genl_op_from_full", "genl_op_from_small", "genl_get_cmd"}
    both = {"genl_family_rcv_msg_doit": "genl_family_rcv_msg_doit",
            "genl_family_rcv_msg_dumpit": "genl_family_rcv_msg_dumpit"}
    for probe in stand_ins:
        assert not needed(probe, both)                                             # x86 6.1
        assert needed(probe, dict(both, genl_family_rcv_msg_doit=None))            # ARM 6.1: inlined
        assert needed(probe, {})
    assert all(needed(p, both) for p in CATALOGUE if not p.stands_in_for)
    assert {p.name for p in CATALOGUE if p.stands_in_for} == {p.name for p in stand_ins} | {"netlink_broadcast",
                                                                                            "skb_queue_tail"}


def test_netlink_broadcast_attaches_only_where_the_kernel_has_no_filtered_variant():
    """5.10 and 6.12 have netlink_broadcast_filtered, which netlink_broadcast
    calls and some notifiers call directly; 6.1 has netlink_broadcast only."""
    (broadcast,) = [p for p in CATALOGUE if p.name == "netlink_broadcast"]
    assert not needed(broadcast, {"netlink_broadcast_filtered": "netlink_broadcast_filtered"})
    assert needed(broadcast, {"netlink_broadcast_filtered": None})


def test_skb_queue_tail_attaches_only_where___netlink_sendskb_is_inlined():
    """5.10 inlines __netlink_sendskb everywhere; 6.1 and 6.12 do not."""
    (queue,) = [p for p in CATALOGUE if p.name == "skb_queue_tail"]
    assert not needed(queue, {"__netlink_sendskb": "__netlink_sendskb"})
    assert needed(queue, {"__netlink_sendskb": None})
    # doctor says where the inlined function's node comes from
    from types import SimpleNamespace
    from nltrace.doctor import catalogue_rows
    for symbols, note in (({"skb_queue_tail": "skb_queue_tail"}, "inlined: its node is seen at skb_queue_tail"),
                          ({}, "")):
        rows = {r.function: r for r in catalogue_rows(SimpleNamespace(symbols=symbols, fentry=set()))}
        assert rows["__netlink_sendskb"].attach_to is None and rows["__netlink_sendskb"].note == note


def test_layout_has_no_implicit_padding():
    ffi = records.ffi
    # The same bytes on a 64-bit host and a 32-bit target: every field is
    # placed right after the previous one.
    for struct in ("struct nlt_node", "struct nlt_record"):
        end = 0
        for name, field in ffi.typeof(struct).fields:
            assert field.offset == end, f"{struct}.{name} at {field.offset}, expected {end}"
            end = field.offset + ffi.sizeof(field.type)
        assert ffi.sizeof(struct) == end
    assert records.NODE_SIZE % 8 == 0 and records.NODES_OFFSET % 8 == 0


def test_parse_record_rejects_short_records():
    import pytest
    with pytest.raises(ValueError):
        records.parse_record(b"\0" * (records.NODES_OFFSET - 1))
    data = bytearray(records.NODES_OFFSET)
    records.ffi.cast("struct nlt_record *", records.ffi.from_buffer(data)).nr_nodes = 3
    with pytest.raises(ValueError, match="fewer nodes"):
        records.parse_record(bytes(data))


def test_parse_record_refuses_a_msg_len_past_msg():
    """Found by tests/host/test_fuzz.py: a msg_len past msg[]'s 256 bytes had
    capture_of() read the record's nodes and then memory past the frame."""
    import pytest
    data = bytearray(records.NODES_OFFSET)
    data[40:42] = (records.C.NLT_MSG_CAPTURE + 1).to_bytes(2, "little")      # msg_len
    with pytest.raises(ValueError, match="msg_len 257"):
        records.parse_record(bytes(data))
    data[40:42] = records.C.NLT_MSG_CAPTURE.to_bytes(2, "little")
    assert len(records.capture_of(records.parse_record(bytes(data))).data) == records.C.NLT_MSG_CAPTURE


def test_parse_histograms_refuses_a_slot_past_the_log2_slots():
    """Found by tests/host/test_fuzz.py: slot 1024 overflowed a float in the
    percentiles (a traceback); slot 2**31 had bucket_bounds() make 2**(2**31)."""
    import pytest
    import struct
    entry = struct.pack("<IIIHHI16sIQ", records.C.NLT_HIST_MESSAGE, 1024, 0, 0, 18, 0, b"", 0, 1)
    with pytest.raises(ValueError, match="slot 1024"):
        records.parse_histograms(struct.pack("<QII", 1, 1, 0) + entry)
    top = struct.pack("<IIIHHI16sIQ", records.C.NLT_HIST_MESSAGE, records.C.NLT_HIST_SLOTS - 1, 0, 0, 18, 0, b"", 0, 1)
    assert records.parse_histograms(struct.pack("<QII", 1, 1, 0) + top)[1]
