"""Runs a tracing tool as a child process for tests and bench: ready file, marker sync, stop.

The pattern is pwru's: start the tool and wait for its ready file (the tool
creates it, holding one JSON object, once every probe is attached), run a
workload, then collect that workload's output. A marker request (`ip link
show lo`) sent after the workload tells when every tree of it has arrived:
the ring buffer keeps commit order, so once the marker's tree is read, every
earlier tree has been too.

Also render(): `nltrace flow|latency --input PATH --json`, for recorded streams.
"""

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Generous bounds on waiting for a tool (BCC compiles slowly under TCG); no
# test asserts anything about time.
READY_WAIT_S = 600
TREE_WAIT_S = 120
MARKER = ("ip", "link", "show", "lo")
POLL_S = 0.05


def bpf_programs():
    """The nltrace BPF programs loaded (BCC's or an agent's: flow.bpf.c's enter_/exit_ names)."""
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if " name " in line and ("enter_" in line or "exit_" in line)]


def bpf_programs_once_freed(timeout_s=30):
    """bpf_programs() once those of ended processes are gone: they are freed as
    the process's files close, after an RCU grace period."""
    deadline = time.monotonic() + timeout_s
    while bpf_programs() and time.monotonic() < deadline:
        time.sleep(0.5)
    return bpf_programs()

def nltrace(command, *args):
    """The argv of `nltrace COMMAND ARGS`, with this Python."""
    return [sys.executable, "-m", "nltrace", command, *args]


def build_agent_here(out):
    """The argv of `nltrace build` of nltrace-agent for this machine's kernel,
    from its BTF and kallsyms (Debian's System.map is a placeholder), into out."""
    return nltrace("build", "--target", "x86_64", "--btf", "/sys/kernel/btf/vmlinux",
                   "--system-map", "/proc/kallsyms", "--release", platform.release(), "-o", out)


class Tracer:
    """A tool (argv) as a child process, its output read in two threads.

    stdout: each line goes through parse; what it returns is kept in .stdout
    (None keeps nothing, so a counting callback can take 10^5 trees without
    holding them). The default keeps each line's JSON. stderr: its lines, in
    .stderr.

    Ready: the tool is started with `--ready-file PATH` appended to argv, and
    is ready once PATH holds a JSON object (kept in .ready) while the tool
    still runs. The one exception, ready_line: a tool with no such option
    (bpftrace) is ready once a stdout line starts with ready_line (bpftrace's
    BEGIN probe prints it), and no --ready-file is added.
    """

    def __init__(self, argv, parse=json.loads, ready_line=None, ready_wait=READY_WAIT_S):
        self.argv, self.parse = list(argv), parse
        self.stdout, self.stderr = [], []
        self.stdout_at = time.monotonic()     # when stdout last had a line
        self.ready = None
        self.cond = threading.Condition()
        self._ip_pids = set()                 # the pids of `ip`'s trees: sync()'s markers are among them
        self._ready_seen = False
        self._dir = tempfile.mkdtemp(prefix="nltrace-ready-")
        self.ready_file = None if ready_line else os.path.join(self._dir, "ready")
        started = time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([*argv, *(["--ready-file", self.ready_file] if self.ready_file else [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", cwd=ROOT, env=env)
        self._readers = [threading.Thread(target=self._read_stdout, args=(ready_line,), daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()
        if ready_line:
            ready = self.wait(lambda: self._ready_seen, ready_wait)
        else:
            ready = self.wait(self._read_ready_file, ready_wait)
        if not ready or self.proc.poll() is not None:
            self._abort(f"{' '.join(self.argv)} never got ready (no {ready_line or 'ready file'}; "
                        f"exit {self.proc.poll()})")
        self.startup_s = time.monotonic() - started

    def _read_stdout(self, ready_line):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            item = self.parse(line)
            ip_pid = self._ip_pid(line)
            with self.cond:
                if item is not None:
                    self.stdout.append(item)
                self.stdout_at = time.monotonic()
                if ip_pid is not None:
                    self._ip_pids.add(ip_pid)
                self._ready_seen |= bool(ready_line) and line.startswith(ready_line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_stderr(self):
        for line in self.proc.stderr:
            with self.cond:
                self.stderr.append(line.rstrip())
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @staticmethod
    def _ip_pid(line):
        """The pid of a tree of `ip`, cheaply: only lines naming "ip" are parsed."""
        if '"ip"' not in line:
            return None
        try:
            tree = json.loads(line)
            return tree["pid"] if tree.get("comm") == "ip" else None
        except (ValueError, AttributeError, KeyError):
            return None

    def _read_ready_file(self):
        try:
            with open(self.ready_file) as f:
                ready = json.load(f)
        except (OSError, ValueError):   # not there yet, or not yet written
            return False
        assert isinstance(ready, dict), f"the ready file holds {ready!r}, not a JSON object"
        self.ready = ready
        return True

    def wait(self, predicate, timeout):
        """Wait until predicate() or the tool's end; whether predicate() holds.
        It is polled too, for what no reader reports (the ready file)."""
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return predicate()
                self.cond.wait(min(left, POLL_S))
            return True

    def wait_for(self, predicate, what, timeout=TREE_WAIT_S):
        if not self.wait(predicate, timeout):
            raise AssertionError(self._never(what))

    def _never(self, what):
        return f"{what} never came (exit {self.proc.poll()}); stderr: {self.stderr[-20:]}"

    def wait_quiet(self, quiet_s, timeout):
        """Wait until stdout has had no new line for quiet_s (at most timeout)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.cond:
                idle = time.monotonic() - self.stdout_at
            if idle >= quiet_s:
                return
            time.sleep(quiet_s - idle)

    def sync(self, timeout=TREE_WAIT_S, resend_s=None):
        """Send a marker request and wait for its tree: every tree committed
        before it has then been read. The marker is `ip`, which starts far
        faster than a Python client under emulation. With resend_s, another
        marker goes out every resend_s: while the ring buffer is still full,
        a marker's tree is lost too."""
        markers = set()
        end = time.monotonic() + timeout
        while True:
            marker = subprocess.Popen(MARKER, stdout=subprocess.DEVNULL)
            assert marker.wait() == 0
            markers.add(marker.pid)
            left = end - time.monotonic()
            if self.wait(lambda: markers & self._ip_pids, left if resend_s is None else min(resend_s, left)):
                return
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(self._never("the marker's tree"))

    def mark(self):
        with self.cond:
            return len(self.stdout)

    def since(self, mark):
        """What stdout kept of everything that ended since mark."""
        self.sync()
        with self.cond:
            return self.stdout[mark:]

    def run(self, argv):
        """Run a workload to its end; return (completed process, its trees)."""
        mark = self.mark()
        done = subprocess.run(argv, check=False, capture_output=True, text=True)
        return done, self.since(mark)

    def stop(self, sig=signal.SIGTERM, timeout=TREE_WAIT_S, resend_s=None):
        """Signal the tool to end and wait for it and for every line it wrote;
        its exit status. resend_s: signal it again this often while it runs,
        for a tool that can miss one. If it does not end, SIGABRT makes
        faulthandler print where every thread of it is stuck, and this raises
        AssertionError."""
        end = time.monotonic() + timeout
        while True:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=min(resend_s or timeout, max(end - time.monotonic(), 0)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    self._abort(f"{' '.join(self.argv)} did not end after {signal.Signals(sig).name}")
        for reader in self._readers:   # every line it wrote, up to the summary, is read
            reader.join(timeout)
        shutil.rmtree(self._dir, ignore_errors=True)
        return self.proc.returncode

    def _abort(self, why):
        if self.proc.poll() is None:
            why += "; " + self._kernel_side()
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait()
            with self.cond:
                self.cond.wait_for(lambda: False, 2)   # the stderr reader's last lines
        shutil.rmtree(self._dir, ignore_errors=True)
        raise AssertionError(f"{why}; stderr: {self.stderr[-60:]}")

    def _kernel_side(self):
        """Where each thread of a stuck tool waits in the kernel, with its
        signal masks, and the kernel log's tail: a tool stuck in a system
        call shows nothing in its own traceback."""
        lines = []
        task_dir = f"/proc/{self.proc.pid}/task"
        for tid in sorted(os.listdir(task_dir)):
            try:
                with open(f"{task_dir}/{tid}/status") as status, open(f"{task_dir}/{tid}/stack") as stack:
                    fields = dict(line.split(":\t", 1) for line in status.read().splitlines() if ":\t" in line)
                    masks = " ".join(f"{k}={fields[k]}" for k in ("SigPnd", "SigBlk", "SigIgn", "SigCgt"))
                    lines.append(f"thread {tid} ({fields['Name']}, {masks}): " + " < ".join(stack.read().split()[1::2]))
            except OSError as error:
                lines.append(f"thread {tid}: {error}")
        log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
        return "kernel side: " + " | ".join(lines) + "; dmesg tail: " + " | ".join(log[-20:])


def render(command, path, *args):
    """`nltrace COMMAND --input PATH --json ARGS`: (its JSON lines, its stderr)."""
    done = subprocess.run(nltrace(command, "--input", str(path), "--json", *args),
                          check=False, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr
