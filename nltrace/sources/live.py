"""The live event source: flow.bpf.c compiled by BCC against the running kernel."""

import ctypes
import mmap
import os
import signal
import struct
import sys
import time
from collections import deque
from importlib import resources

from nltrace import records
from nltrace.catalogue import CATALOGUE, TREE_FUNCTIONS, needed
from nltrace.kernel.features import kallsyms_addresses
from nltrace.kernel.layout import LayoutError, layout_cflags, read_layout
from nltrace.sources.pacing import Pacer

BPF_DIR = resources.files("nltrace") / "bpf"
BPF_SOURCE = str(BPF_DIR / "flow.bpf.c").encode()
# Threads blocked in netlink_recvmsg (daemons waiting for events) each hold a
# kretprobe instance; the kernel's default of ~2 per CPU would run out.
KRETPROBE_MAXACTIVE = 512
CONSUME_BATCH = 64      # records taken out of the ring per libbpf call


class AttachError(Exception):
    pass


def _plan(symbols, on_demand, only):
    """The catalogue probes to attach, as [(probe, symbol)], and {name: why
    not} for those that cannot be."""
    wanted, missing = [], {}
    for probe in CATALOGUE:
        if probe.on_demand and probe.name not in on_demand or only is not None and probe.name not in only:
            continue
        if not needed(probe, symbols):
            continue
        if symbols.get(probe.name):
            wanted.append((probe, symbols[probe.name]))
        else:
            missing[probe.name] = "not traceable on this kernel (absent or inlined)"
    return wanted, missing


def _fentry_cflags(fentry):
    """-DNLT_FENTRY_<fn>=0|1 for every catalogue function (compat.h)."""
    return [f"-DNLT_FENTRY_{probe.name}={int(probe.name in fentry)}" for probe in TREE_FUNCTIONS]


def _layout_cflags():
    """Struct offsets from the running kernel's BTF; without BTF (or pahole),
    from the kernel headers, which costs a much slower compile."""
    try:
        return layout_cflags(read_layout())
    except LayoutError:
        return ["-DNLT_LAYOUT_FROM_HEADERS"]


class BccSource:
    """Compile, attach, and yield raw records until stop() or close()."""

    def __init__(self, symbols, fentry=frozenset(), pid=None, comm=None, skip_recv=False, latency=None,
                 on_demand=(), only=None, ring_mb=None):
        """symbols: catalogue name -> kernel symbol or None (features.probe()).
        fentry: catalogue functions that may be probed with fentry/fexit
        instead of kprobe/kretprobe (features.probe()).
        latency: None for flow (a record per tree), or the kernel-side filters
        of nltrace latency as {"protocol": n, "type": n, "cmd": n} (None: any).
        on_demand: catalogue probes marked on_demand to attach too.
        only: attach only these catalogue probes (None: all).
        ring_mb: flow's ring buffer size in MiB, a power of two."""
        from bcc import BPF  # imported here so that doctor and --input work without BCC

        wanted, self.missing = _plan(symbols, set(on_demand), only)
        if latency is None:
            ring_bytes = ring_mb << 20
            mode = [f"-DNLT_RINGBUF_PAGES={ring_bytes // mmap.PAGESIZE}"]
        else:
            mode = ["-DNLT_LATENCY"]
        cflags = ["-DNLT_BCC", f"-I{BPF_DIR}"] + _layout_cflags() + mode
        # BCC attaches the fentry/fexit programs as it loads them; they stay
        # idle until the config says armed, below.
        self.fentry = {probe.name for probe, _ in wanted if probe.name in fentry}
        self.fentry_failure = None
        try:
            self.bpf = BPF(src_file=BPF_SOURCE, cflags=cflags + _fentry_cflags(self.fentry))
        except Exception as e:  # BCC raises bare Exception
            if not self.fentry:
                raise
            # e.g. a kernel before 5.17, without the helpers that read a
            # fentry program's arguments: kprobes do everything. (A compile
            # error fails twice. fentry programs attached before a later one
            # failed stay attached, recording nothing (their config was never armed),
            # until the process exits.)
            self.fentry_failure, self.fentry = str(e), set()
            self.bpf = BPF(src_file=BPF_SOURCE, cflags=cflags + _fentry_cflags(set()))
        # rtnetlink's dispatch table (to name handlers) and the RTNL mutex
        symbols_at = kallsyms_addresses("rtnl_msg_handlers", "rtnl_mutex")
        settings = {records.C.NLT_CFG_PID: pid or 0, records.C.NLT_CFG_SKIP_RECV: int(skip_recv),
                    records.C.NLT_CFG_RTNL_HANDLERS: symbols_at["rtnl_msg_handlers"],
                    records.C.NLT_CFG_RTNL_MUTEX: symbols_at["rtnl_mutex"]}
        if comm:
            raw = comm.encode()[:15].ljust(16, b"\0")
            settings[records.C.NLT_CFG_COMM_LO] = int.from_bytes(raw[:8], sys.byteorder)
            settings[records.C.NLT_CFG_COMM_HI] = int.from_bytes(raw[8:], sys.byteorder)
        for name, value in (latency or {}).items():
            if value is not None:   # stored + 1, so that 0 means "any"
                settings[getattr(records.C, f"NLT_CFG_{name.upper()}")] = value + 1
        self._config = self.bpf["config"]
        for index, value in settings.items():
            self._set(index, value)

        self._pending = deque()
        self._symbols = {}
        if latency is None:
            self.bpf["events"].open_ring_buffer(self._on_record)
            self._ring = RingPositions(self.bpf["events"].map_fd)
            self._pacer = Pacer(ring_bytes)
        try:
            self.attached = self._attach(wanted)
        except BaseException:   # AttachError, or Ctrl-C/SIGTERM halfway: detach what was attached
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
                    if probe.kind == "function":
                        self.bpf.attach_kretprobe(event=symbol.encode(), fn_name=probe.programs[1].encode(),
                                                  maxactive=KRETPROBE_MAXACTIVE)
                    self.bpf.attach_kprobe(event=symbol.encode(), fn_name=probe.programs[0].encode())
                attached.append(probe.name)
            except Exception as e:  # BCC raises bare Exception
                self.missing[probe.name] = f"attach failed: {e}"
        if not attached:
            raise AttachError("no probe could be attached: " +
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
        behind = False
        while True:
            now = time.monotonic()
            tick_end = now + self._pacer.tick_s
            budget_end = now + self._pacer.budget(self._ring.used(), behind)
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

    def counters(self):
        table = self.bpf["counters"]
        names = {records.C.NLT_CNT_LOST: "lost", records.C.NLT_CNT_TRUNCATED: "truncated",
                 records.C.NLT_CNT_INCOMPLETE: "incomplete"}
        return {name: sum(table[ctypes.c_int(i)]) for i, name in names.items()}

    def read_histograms(self):
        """({raw key: cumulative count}, {raw key: max ns since the last read}),
        summed over CPUs. A raw key is (kind, slot, func, protocol, type, cmd, name);
        the max entries are cleared as they are read, so each max covers one interval."""
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
        return counts, maxima

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


def meta():
    return {"arch": os.uname().machine, "pointer_size": ctypes.sizeof(ctypes.c_void_p),
            "endianness": sys.byteorder,
            "kernel_release": os.uname().release, "clock": "CLOCK_MONOTONIC", "source": "bcc"}
