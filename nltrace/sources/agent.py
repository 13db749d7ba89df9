"""The ahead-of-time source: nltrace-agent, built by `nltrace build --target
x86_64` for this machine's kernel, loads the programs with libbpf and
attaches them in about a second, where BCC compiles for tens of seconds
(README: Overhead). Its stream, on a pipe, is read as a recorded one is
(stream.py), by a thread, so that the reader gets heartbeats while the agent
is quiet (its output is flushed on them, -d is checked)."""

import ctypes
import os
import queue
import signal
import struct
import subprocess
import threading
import time

from nltrace import records
from nltrace.errors import LoadError
from nltrace.sources.stream import StreamSource

PR_SET_PDEATHSIG = 1
AGENT_STOP_WAIT_S = 30
HEARTBEAT_S = 0.1      # how often records() yields None while the agent is quiet
_END = object()


PID = struct.Struct("=I")
PID_OFFSET = records.ffi.offsetof("struct nlt_record", "pid")


def _pid_of(raw):
    """The sender's pid in a raw record (None if too short: the reader says why)."""
    return PID.unpack_from(raw, PID_OFFSET)[0] if len(raw) >= PID_OFFSET + PID.size else None


def _die_with_parent():
    """In the agent, before exec: a SIGTERM when nltrace goes away (even by
    kill -9), so that no probe stays attached behind it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class AgentSource:
    """A Source (sources/__init__.py): the agent's stream until close().
    Raises LoadError when the agent cannot start, or (from records(), drain()
    or close()) when it failed on its own: its messages, on the stderr it
    shares, say why."""

    def __init__(self, agent, args, mode):
        """agent: the nltrace-agent binary; args: its options (filters,
        --ready-file); mode: "flow" or "latency"."""
        self.mode = mode
        # the agent runs on this machine: its CLOCK_MONOTONIC is ours
        self.realtime_offset_ns = time.time_ns() - time.monotonic_ns()
        try:
            self.proc = subprocess.Popen([agent, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        except OSError as e:
            raise LoadError(f"cannot run {agent}: {e.strerror}") from None
        self._stream = None
        # the agent traces this process too (the redactor's genl family
        # query, made while it attaches): not the user's messages
        self._own_pid = os.getpid()
        self._ended = False   # the stream's end was read
        self._stopped = False  # we sent it SIGTERM
        self._queue = queue.Queue()
        threading.Thread(target=self._read, args=(agent,), daemon=True).start()

    def _read(self, agent):
        try:
            self._stream = StreamSource(agent, self.mode, file=self.proc.stdout)
            frames = self._stream.records() if self.mode == "flow" else self._stream.histograms()
            for payload in frames:
                if self.mode == "flow" and _pid_of(payload) == self._own_pid:
                    continue
                self._queue.put(payload)
            self._queue.put(_END)
        except Exception as e:   # BadInput: no stream (the agent failed), or a cut one
            self._queue.put(e)

    def _next(self, timeout):
        item = self._queue.get(timeout=timeout)
        if isinstance(item, Exception):
            if self._killed_by_our_stop():
                return _END    # stopped before it set its handlers: its stream ends where it was cut
            self._check_exit()
            raise item
        return item

    def _stop(self):
        if self.proc.poll() is None:
            self._stopped = True
            self.proc.send_signal(signal.SIGTERM)

    def _killed_by_our_stop(self):
        return self._stopped and self.proc.wait() == -signal.SIGTERM

    def _check_exit(self):
        """Raise LoadError if the agent failed on its own (not stopped by us)."""
        status = self.proc.wait()
        if status and not self._killed_by_our_stop():
            raise LoadError(f"nltrace-agent failed (exit status {status}); its messages are above")

    def _frames(self):
        """The agent's records (flow) or snapshots (latency) as they come, a
        None every HEARTBEAT_S while none does."""
        while True:
            try:
                item = self._next(HEARTBEAT_S)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                self._ended = True
                return
            yield item

    def records(self):
        return self._frames()

    def histograms(self, interval=None):
        """The agent's snapshots: every -i seconds, if it was given one (its args)."""
        return self._frames()

    def final_histograms(self):
        """At the end: the agent's last snapshot, written as it stops."""
        last = None
        for last in self.drain():
            pass
        return last

    def drain(self):
        """At the stop: the agent detaches and writes what its ring buffer
        still held; read to the end of its stream."""
        self._stop()
        while not self._ended:
            item = self._next(None)
            self._ended = item is _END
            if not self._ended:
                yield item

    def discard(self):
        self.proc.kill()
        return 0

    def counters(self):
        return self._stream.counters() if self._stream else {}

    def symbolize(self, addr):
        return self._stream.symbolize(addr) if self._stream else None

    def close(self):
        """Stop the agent; raises LoadError if it had failed on its own."""
        self._stop()
        try:
            self.proc.wait(AGENT_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._check_exit()
