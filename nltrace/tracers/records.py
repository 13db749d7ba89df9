"""The record layout, read from nltrace/bpf/records.h (its single definition).

cffi parses the header, so sizes, offsets and enum values here are the ones
the kernel programs were compiled with; nothing is restated by hand.
"""

import re
import struct
from importlib import resources

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

    Raises ValueError for a record too short for its own node count, so a
    corrupt capture is reported instead of read past its end.
    """
    if len(data) < NODES_OFFSET:
        raise ValueError(f"record of {len(data)} bytes is shorter than its header ({NODES_OFFSET})")
    rec = ffi.cast("struct nlt_record *", ffi.from_buffer(data))
    need = NODES_OFFSET + min(rec.nr_nodes, C.NLT_MAX_NODES) * NODE_SIZE
    if len(data) < need:
        raise ValueError(f"record of {len(data)} bytes holds fewer nodes than its count ({rec.nr_nodes})")
    return rec


def node_tuples(rec):
    """(start_ns, end_ns, ret, func, depth, pad, aux) of each node of a parsed record."""
    n = min(rec.nr_nodes, MAX_NODES)
    return NODE.iter_unpack(ffi.buffer(rec.nodes, n * NODE_SIZE))
