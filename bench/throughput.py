#!/usr/bin/env python3
"""Host-side throughput: how fast the Python side turns kernel records into
trees, with no kernel involved.

It reads a stream recorded in the VM (tests/fixtures/*.nltrace by default),
repeats its records until there are --trees of them, each copy with its own
timestamp and message sequence number (so that nothing downstream sees the
same bytes twice), and times the per-record work of `nltrace flow`:

  assemble   records.parse_record + trees.assemble (decoding included)
  flow-json  the same plus the JSON line `flow --json` prints

An event is one probe hit, as in bench/run.py: each node of a tree is a traced
call, two hits (entry and return). It prints one JSON line per stage.
"""

import argparse
import glob
import json
import os
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nltrace import records  # noqa: E402
from nltrace.stream_format import RECORD, SYMBOLS, read_frames  # noqa: E402
from nltrace.trees import assemble  # noqa: E402
from nltrace.views import json_line  # noqa: E402

TS_OFFSET = records.ffi.offsetof("struct nlt_record", "ts_ns")
SEQ_OFFSET = records.ffi.offsetof("struct nlt_record", "msg") + 8   # nlmsghdr.nlmsg_seq


def load(path):
    recorded, symbols = [], {}
    with open(path, "rb") as f:
        frames = read_frames(f)
        next(frames)
        for kind, payload in frames:
            if kind == RECORD:
                recorded.append(payload)
            elif kind == SYMBOLS:
                symbols.update({int(a, 16): n for a, n in payload.items()})
    return recorded, symbols


def replicate(recorded, count):
    """count records cycling through the recorded ones, each copy with a
    distinct timestamp and (where a message was captured) sequence number."""
    out = []
    for i in range(count):
        raw = bytearray(recorded[i % len(recorded)])
        struct.pack_into("=Q", raw, TS_OFFSET, i * 1000)
        if records.parse_record(raw).msg_len >= 16:
            struct.pack_into("=I", raw, SEQ_OFFSET, i)
        out.append(bytes(raw))
    return out


def run(stream, symbols, with_json):
    nodes = 0
    started = time.perf_counter()
    for raw in stream:
        rec = records.parse_record(raw)
        tree = assemble(rec, symbols.get)
        nodes += min(rec.nr_nodes, records.C.NLT_MAX_NODES)
        if with_json:
            json_line(tree)
    return time.perf_counter() - started, nodes


def main():
    default = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "*.nltrace")))[-1]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=default, help="a recorded stream (default: %(default)s)")
    parser.add_argument("--trees", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    recorded, symbols = load(args.input)
    stream = replicate(recorded, args.trees)
    for stage, with_json in (("assemble", False), ("flow-json", True)):
        seconds, nodes = min(run(stream, symbols, with_json) for _ in range(args.repeat))
        print(json.dumps({"stage": stage, "trees": len(stream), "events": 2 * nodes,
                          "seconds": round(seconds, 4), "trees_per_s": round(len(stream) / seconds),
                          "events_per_s": round(2 * nodes / seconds)}))


if __name__ == "__main__":
    main()
