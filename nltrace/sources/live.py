"""The live source: a mode's program (nltrace/bpf) compiled by BCC against the
running kernel, attached, and read."""

import ctypes
import mmap
import os
import re
import signal
import struct
import sys
import time
from collections import deque

from nltrace import records
from nltrace.bpf import BPF_DIR, bcc_text
from nltrace.catalogue import TREE_FUNCTIONS
from nltrace.config import ADDRESSES
from nltrace.errors import LoadError
from nltrace.kernel.layout import LayoutError, layout_cflags, read_layout
from nltrace.kernel.symbols import kallsyms_addresses
from nltrace.kernel.tracefs import remove_stale_bcc_events
from nltrace.sources import Snapshot
from nltrace.sources.pacing import Pacer

# Threads blocked in netlink_recvmsg (daemons waiting for events) each hold a
# kretprobe instance; the kernel's default of ~2 per CPU would run out. (The
# agent takes 128, for a BMC's memory: agent/agent.h.)
KRETPROBE_MAXACTIVE = 512
CONSUME_BATCH = 64      # records taken out of the ring per libbpf call
HEARTBEAT_S = 0.1       # latency: how often histograms() looks up from its sleep (for -d)


def _program_cflags(wanted, fentry):
    """-DNLT_KPROBE_<fn>=0|1 and -DNLT_FENTRY_<fn>=0|1 for every catalogue
    function (compat.h): the programs of the wanted ones only, each either
    kind. fentry: a subset of wanted."""
    flags = []
    for probe in TREE_FUNCTIONS:
        by_fentry = probe.name in fentry
        flags += [f"-DNLT_KPROBE_{probe.name}={int(probe.name in wanted and not by_fentry)}",
                  f"-DNLT_FENTRY_{probe.name}={int(by_fentry)}"]
    return flags


def _layout_cflags():
    """Struct offsets from the running kernel's BTF; without BTF (or pahole),
    from the kernel headers, which costs a much slower compile."""
    try:
        return layout_cflags(read_layout())
    except LayoutError:
        return ["-DNLT_LAYOUT_FROM_HEADERS"]


class BccSource:
    """A Source (sources/__init__.py): compile, attach, and read until close().
    Raises LoadError when the programs cannot be compiled, loaded or attached."""

    def __init__(self, config, symbols, fentry=frozenset(), before_arming=lambda: None):
        """config: a TraceConfig. symbols: catalogue name -> kernel symbol or
        None, and fentry: the catalogue functions that may be probed with
        fentry/fexit instead of kprobe/kretprobe (kernel.features.probe()).
        before_arming: called once every probe is attached, before any may
        record (what it raises detaches them)."""
        from bcc import BPF  # imported here so that doctor and --input work without BCC

        self.mode = config.mode
        self.realtime_offset_ns = time.time_ns() - time.monotonic_ns()
        wanted, self.missing = config.plan(symbols)
        # BCC's event names: the symbol with "." and "+" as "_"
        self.stale_removed, self.stale_left = remove_stale_bcc_events(
            {re.sub(r"[.+]", "_", symbol) for _, symbol in wanted})
        # The two warnings 6.12's x86 headers give BCC's clang (address spaces
        # and nocf_check in percpu.h and ibt.h) are the kernel's, not ours.
        cflags = ["-DNLT_BCC", f"-I{BPF_DIR}", "-Wno-duplicate-decl-specifier",
                  "-Wno-ignored-attributes"] + _layout_cflags()
        if config.mode == "flow":
            ring_bytes = config.ring_mb << 20
            cflags.append(f"-DNLT_RINGBUF_PAGES={ring_bytes // mmap.PAGESIZE}")
        text = bcc_text(config.mode)
        # BCC attaches the fentry/fexit programs as it loads them; they stay
        # idle until the config says armed, below.
        names = {probe.name for probe, _ in wanted}
        self.fentry = set() if config.kprobes else names & fentry
        self.fentry_failure = None
        try:
            try:
                self.bpf = BPF(text=text, cflags=cflags + _program_cflags(names, self.fentry))
            except Exception as e:  # BCC raises bare Exception
                if not self.fentry:
                    raise
                # e.g. a kernel before 5.17, without the helpers that read a
                # fentry program's arguments: kprobes do everything. (A compile
                # error fails twice. fentry programs attached before a later one
                # failed stay attached, recording nothing (their config was never
                # armed), until the process exits.)
                self.fentry_failure, self.fentry = str(e), set()
                self.bpf = BPF(text=text, cflags=cflags + _program_cflags(names, set()))
        except Exception as e:  # BCC reports compile and load failures as bare Exception
            raise LoadError(f"could not load the BPF programs: {e}") from None
        self._config = self.bpf["config"]
        for index, value in config.words(kallsyms_addresses(*ADDRESSES)).items():
            self._set(index, value)

        self._pending = deque()
        self._symbols = {}
        if config.mode == "flow":
            self.bpf["events"].open_ring_buffer(self._on_record)
            self._ring = RingPositions(self.bpf["events"].map_fd)
            self._pacer = Pacer(ring_bytes)
            self._counters = self.bpf["counters"]
        try:
            self.attached = self._attach(wanted)
            before_arming()
        except BaseException:   # LoadError, or Ctrl-C/SIGTERM halfway: detach what was attached
            self.bpf.cleanup()
            raise
        self._set(records.C.NLT_CFG_ARMED, 1)   # every probe is in place: trees may start

    def _set(self, index, value):
        self._config[ctypes.c_int(index)] = ctypes.c_ulonglong(value)

    def _attach(self, wanted):
        """Attach what BCC has not (all but the fentry/fexit programs); the
        names of the attached probes."""
        attached = []
        for probe, symbol in wanted:
            try:
                if probe.name in self.fentry:
                    pass   # attached by BCC as it loaded them
                elif probe.kind == "raw_tracepoint":
                    self.bpf.attach_raw_tracepoint(tp=symbol.encode(), fn_name=probe.programs[0].encode())
                else:
                    # the return first, so that no call's entry is seen without its return
                    if len(probe.programs) == 2:
                        self.bpf.attach_kretprobe(event=symbol.encode(), fn_name=probe.programs[1].encode(),
                                                  maxactive=KRETPROBE_MAXACTIVE)
                    self.bpf.attach_kprobe(event=symbol.encode(), fn_name=probe.programs[0].encode())
                attached.append(probe.name)
            except Exception as e:  # BCC raises bare Exception
                self.missing[probe.name] = f"attach failed: {e}"
        if not attached:
            raise LoadError("no probe could be attached: " +
                            "; ".join(f"{k}: {v}" for k, v in self.missing.items()))
        return attached

    def _on_record(self, _ctx, data, size):
        self._pending.append(ctypes.string_at(data, size))
        return -1 if len(self._pending) >= CONSUME_BATCH else 0   # < 0: libbpf stops after this one

    def _next_batch(self):
        """Take up to CONSUME_BATCH records out of the ring; False if it was empty."""
        if not self._pending:
            # Ctrl-C and SIGTERM wait while libbpf runs _on_record: an exception
            # raised inside a ctypes callback is printed and dropped, and the
            # tool would run on. Held, they are raised as soon as it returns.
            # (The mask is read first: a signal handled by the blocking call
            # itself would otherwise leave them blocked for good.)
            held = signal.pthread_sigmask(signal.SIG_BLOCK, ())
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                self.bpf.ring_buffer_consume()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return bool(self._pending)

    def records(self):
        """Yield raw records forever, paced (pacing.py); the caller stops
        iterating to end. The kernel wakes no one (BPF_RB_NO_WAKEUP): the
        reader looks once per tick."""
        behind, lost = False, self._lost()
        while True:
            now = time.monotonic()
            tick_end = now + self._pacer.tick_s
            total = self._lost()
            dropped, lost = total > lost, total
            budget_end = now + self._pacer.budget(self._ring.used(), behind, dropped)
            behind = False
            while self._next_batch():
                if time.monotonic() >= budget_end:
                    behind = True
                    break
                yield self._pending.popleft()
            yield None   # a heartbeat, so the caller can check its deadline
            if not behind or self._pacer.in_burst:
                time.sleep(max(0.0, tick_end - time.monotonic()))

    def symbolize(self, addr):
        name = self._symbols.get(addr)
        if name is None:
            raw = self.bpf.ksym(addr)
            name = None if raw == b"[unknown]" else raw.decode()
            self._symbols[addr] = name
        return name

    def _lost(self):
        return sum(self._counters[ctypes.c_int(records.C.NLT_CNT_LOST)])

    def counters(self):
        table = self.bpf["counters"]
        names = {records.C.NLT_CNT_LOST: "lost", records.C.NLT_CNT_TRUNCATED: "truncated",
                 records.C.NLT_CNT_INCOMPLETE: "incomplete"}
        return {name: sum(table[ctypes.c_int(i)]) for i, name in names.items()}

    def _snapshot(self):
        """The maps summed over CPUs; the max entries are cleared as they are
        read, so each max covers the time since the previous snapshot."""
        counts, maxima = {}, {}
        table = self.bpf["hists"]
        for key, per_cpu in table.items():
            raw = (key.kind, key.slot, key.func, key.protocol, key.type, key.cmd,
                   key.name.decode("utf-8", "replace"))   # as records.hist_key() makes it
            if key.slot == records.C.NLT_SLOT_MAX:
                maxima[raw] = max(per_cpu)
                del table[key]
            else:
                counts[raw] = sum(per_cpu)
        return Snapshot(time.monotonic_ns(), counts, maxima)

    def histograms(self, interval=None):
        """A Snapshot every interval seconds (none without one), and a
        heartbeat (None) at least every HEARTBEAT_S, forever."""
        next_report = time.monotonic() + interval if interval else None
        while True:
            wake = min(t for t in (next_report, time.monotonic() + HEARTBEAT_S) if t)
            time.sleep(max(wake - time.monotonic(), 0))
            if next_report and time.monotonic() >= next_report:
                next_report += interval
                yield self._snapshot()
            else:
                yield None

    def final_histograms(self):
        return self._snapshot()

    def _written_before(self, end):
        """More records wait that were in the ring at position end? (The probes
        are still attached: on a busy system the ring never empties.)"""
        return bool(self._pending) or self._ring.consumer() < end and self._next_batch()

    def drain(self):
        """The records in the ring buffer now, read without waiting."""
        end = self._ring.producer()
        while self._written_before(end):
            yield self._pending.popleft()

    def discard(self):
        """Skip the records in the ring now; returns how many."""
        end, n = self._ring.producer(), 0
        while self._written_before(end):
            n += len(self._pending)
            self._pending.clear()
        return n

    def close(self):
        self.bpf.cleanup()


class RingPositions:
    """The kernel ring buffer's producer and consumer positions, read from
    their mapped pages (read-only). Only a hint for pacing: libbpf reads
    the records themselves, with the memory ordering that needs."""

    def __init__(self, map_fd):
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self._producer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)

    def producer(self):
        """Bytes written so far."""
        return struct.unpack_from("=Q", self._producer)[0]

    def consumer(self):
        """Bytes read so far."""
        return struct.unpack_from("=Q", self._consumer)[0]

    def used(self):
        """Bytes written and not yet read."""
        return self.producer() - self.consumer()


def stream_meta(source):
    """The header of a stream that `nltrace record` writes from source."""
    return {"arch": os.uname().machine, "pointer_size": ctypes.sizeof(ctypes.c_void_p),
            "endianness": sys.byteorder, "kernel_release": os.uname().release,
            "clock": "CLOCK_MONOTONIC", "realtime_offset_ns": source.realtime_offset_ns,
            "source": "bcc", "probes": source.attached}
