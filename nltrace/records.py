"""The record layout, read from nltrace/bpf/records.h (its single definition).

cffi parses the header, so sizes, offsets and enum values here are the ones
the kernel programs were compiled with; nothing is restated by hand.
"""

import re
import struct
from importlib import resources
from typing import NamedTuple

import cffi

HEADER = resources.files("nltrace") / "bpf" / "records.h"

_INT_TYPES = """
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
"""


def _cdef_text(text):
    # cffi takes "#define NAME <int>" but no comments or include guards.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return _INT_TYPES + text


ffi = cffi.FFI()
ffi.cdef(_cdef_text(HEADER.read_text()), packed=False)
C = ffi.dlopen(None)

RECORD_SIZE = ffi.sizeof("struct nlt_record")
NODE_SIZE = ffi.sizeof("struct nlt_node")
NODES_OFFSET = ffi.offsetof("struct nlt_record", "nodes")

_STRUCT_CODES = {"unsigned char": "B", "unsigned short": "H", "unsigned int": "I",
                 "unsigned long long": "Q", "int": "i", "long long": "q"}


def _struct_of(ctype):
    """A struct.Struct for a records.h struct of integer fields, made from
    cffi's view of it (so the layout is still read from records.h only)."""
    fmt, at = "=", 0
    for _, field in ffi.typeof(ctype).fields:
        fmt += "x" * (field.offset - at) + _STRUCT_CODES[field.type.cname]
        at = field.offset + ffi.sizeof(field.type)
    fmt += "x" * (ffi.sizeof(ctype) - at)
    return struct.Struct(fmt)


# struct nlt_node as a tuple, unpacked many at a time: far faster than
# reading the fields one by one through cffi.
NODE = _struct_of("struct nlt_node")
MAX_NODES = C.NLT_MAX_NODES

FUNC_PREFIX = "NLT_FN_"
# func id -> kernel function name, from enum nlt_func
FUNC_NAMES = {
    value: name[len(FUNC_PREFIX):]
    for name, value in ffi.typeof("enum nlt_func").relements.items()
    if name != "NLT_FN_MAX"
}


def parse_record(data):
    """A bytes record from the ring buffer (or a stream) -> cffi struct view.

    Raises ValueError for a record too short for its own node count, or
    whose msg_len is more than its msg[] holds, so a corrupt capture is
    reported instead of read past its end.
    """
    if len(data) < NODES_OFFSET:
        raise ValueError(f"record of {len(data)} bytes is shorter than its header ({NODES_OFFSET})")
    rec = ffi.cast("struct nlt_record *", ffi.from_buffer(data))
    if rec.msg_len > C.NLT_MSG_CAPTURE:
        raise ValueError(f"record's msg_len {rec.msg_len} is more than its msg[] holds ({C.NLT_MSG_CAPTURE})")
    need = NODES_OFFSET + min(rec.nr_nodes, C.NLT_MAX_NODES) * NODE_SIZE
    if len(data) < need:
        raise ValueError(f"record of {len(data)} bytes holds fewer nodes than its count ({rec.nr_nodes})")
    return rec


class Capture(NamedTuple):
    """The message bytes a record holds, as the kernel program copied them."""
    data: bytes      # at most NLT_MSG_CAPTURE bytes of the message(s); b"" for socket trees
    length: int      # the skb's length: what was there in full
    protocol: int    # the socket's netlink protocol, 0xffff if unknown


def capture_of(rec):
    if rec.flags & C.NLT_REC_SOCKET:
        return Capture(b"", 0, rec.protocol)
    return Capture(bytes(ffi.buffer(rec.msg, rec.msg_len)), rec.msg_total_len, rec.protocol)


HIST_HEAD_SIZE = ffi.sizeof("struct nlt_hist_head")
HIST_ENTRY_SIZE = ffi.sizeof("struct nlt_hist_entry")


def hist_key(key):
    """A struct nlt_hist_key -> the raw key tuple the histogram code groups:
    (kind, slot, func, protocol, type, cmd, name)."""
    return (key.kind, key.slot, key.func, key.protocol, key.type, key.cmd,
            ffi.string(key.name).decode("utf-8", "replace"))


def parse_histograms(data):
    """A HISTOGRAMS frame -> (ts_ns, {raw key: cumulative count}, {raw key: max ns}).
    Raises ValueError for a frame cut short or an entry in no slot a kernel program fills."""
    if len(data) < HIST_HEAD_SIZE:
        raise ValueError(f"{len(data)} bytes is shorter than its head")
    head = ffi.cast("struct nlt_hist_head *", ffi.from_buffer(data))
    if len(data) != HIST_HEAD_SIZE + head.nr_entries * HIST_ENTRY_SIZE:
        raise ValueError(f"{len(data)} bytes do not hold its {head.nr_entries} entries")
    # a pointer into data itself: a cast of a slice's buffer would outlive the slice
    # (cffi's cast keeps no reference), and read freed memory
    body = ffi.from_buffer(data)
    entries = ffi.cast("struct nlt_hist_entry *", body + HIST_HEAD_SIZE)
    counts, maxima = {}, {}
    for i in range(head.nr_entries):
        raw = hist_key(entries[i].key)
        if raw[1] >= C.NLT_HIST_SLOTS and raw[1] != C.NLT_SLOT_MAX:
            raise ValueError(f"entry {i} is in slot {raw[1]}, past the {C.NLT_HIST_SLOTS} log2 slots")
        (maxima if raw[1] == C.NLT_SLOT_MAX else counts)[raw] = entries[i].value
    return head.ts_ns, counts, maxima


SOCKET = _struct_of("struct nlt_socket")


def socket_facts(rec):
    """A socket tree's (NLT_REC_SOCKET) struct nlt_socket, as a dict; None
    for a message's tree, or one whose facts did not fit."""
    if not rec.flags & C.NLT_REC_SOCKET or rec.msg_len < SOCKET.size:
        return None
    names = [name for name, _ in ffi.typeof("struct nlt_socket").fields]
    return dict(zip(names, SOCKET.unpack(ffi.buffer(rec.msg, SOCKET.size))))


def node_tuples(rec):
    """(start_ns, end_ns, ret, arg, func, depth, flags, aux) of each node of a parsed record."""
    n = min(rec.nr_nodes, MAX_NODES)
    return NODE.iter_unpack(ffi.buffer(rec.nodes, n * NODE_SIZE))
