"""Running a trace: open the source, read it until the end, a duration or a
stop signal, and hand each record, tree or snapshot to the view."""

import importlib
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from nltrace import records
from nltrace.errors import CannotTrace, Interrupted, LoadError
from nltrace.kernel import features

# What each mode needs once attached: the decoding (pyroute2), the slowest
# imports, loaded while BCC compiles (open_live) or, from a stream, at first use.
AFTER_ATTACHING = {"flow": ("nltrace.trees", "nltrace.links", "nltrace.redact"), "latency": ("nltrace.histograms",)}


class Stop(BaseException):
    """Ctrl-C or SIGTERM. A BaseException, as KeyboardInterrupt is, so that an
    `except Exception` does not catch it; and counted in Stop.signals,
    because a bare `except:` (pyroute2 has some on the decoding path) can.
    While deferred (an item being handled, or the trace set up and drive()
    not yet started) it is only counted. acted: the signals a stop was made
    of so far (drive() acts on any since)."""
    signals = 0
    acted = 0
    deferred = False


def _on_stop_signal(_signo, _frame):
    Stop.signals += 1
    if not Stop.deferred:
        raise Stop()


@contextmanager
def stop_deferred():
    """A stop signal during the block is counted and acted on after it: a
    tree is shown and exported whole, or not at all."""
    Stop.deferred = True
    try:
        yield
    finally:
        Stop.deferred = False


def defer_stops():
    """From now until drive() starts, a stop signal is only counted, and
    drive() acts on it at once: what is set up between (the views' imports,
    the export files, a redactor) is never cut halfway, and the source is
    closed as usual. open_live and open_agent call it once attached."""
    catch_stop_signals()
    Stop.deferred = True


def catch_stop_signals():
    for signo in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signo, _on_stop_signal)


def release_stop_signals():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def open_live(config, meanwhile=lambda: None):
    """Check the kernel, then compile and attach config's program: (a
    BccSource, what meanwhile() returned). A thread imports the modules the
    mode needs after attaching, then runs meanwhile, while BCC compiles (its
    compile releases the GIL throughout); it ends before any probe is armed,
    so its own netlink requests are never traced. Raises CannotTrace,
    LoadError, Interrupted, or what meanwhile raised."""
    report = features.probe()
    if not report.can_trace:
        lines = [f"cannot trace on this kernel ({report.release}):"]
        lines += [f"  - {c.name}: {c.detail}. Fix: {c.fix}" for c in report.failed()]
        lines.append("Run `nltrace doctor` for the full report.")
        raise CannotTrace("\n".join(lines))
    from nltrace.sources.live import BccSource
    catch_stop_signals()
    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(_prepare, AFTER_ATTACHING[config.mode], meanwhile)
        try:
            source = BccSource(config, report.symbols, report.fentry, before_arming=prepared.result)
        except Stop:
            raise Interrupted("interrupted before tracing began; nothing is left attached") from None
    defer_stops()
    return source, prepared.result()


def open_agent(agent, config, ready_file, duration, interval=None, protocol=None, msg_type=None):
    """nltrace-agent as the source (sources/agent.py), with config's filters
    and options, and --protocol and --type as the user wrote them (the agent
    reads the same names); it writes the ready file once attached, latency's
    histograms every interval, and ends its stream after duration. Raises
    LoadError, Interrupted."""
    from nltrace.sources.agent import AgentSource
    args = config.agent_args()
    for option, value in (("--protocol", protocol), ("--type", msg_type), ("--ready-file", ready_file),
                          ("-d", duration), ("-i", interval)):
        args += [option, str(value)] if value else []
    catch_stop_signals()
    try:
        source = AgentSource(agent, args, config.mode)
    except Stop:
        raise Interrupted("interrupted before tracing began; nothing is left attached") from None
    defer_stops()
    return source


def _prepare(modules, meanwhile):
    for name in modules:
        importlib.import_module(name)
    return meanwhile()


def write_ready_file(path, source):
    """pwru's handshake: PATH exists once every probe is attached. It says
    which: the catalogue probes attached, those by fentry/fexit, and why the
    others were not."""
    try:
        with open(path, "w") as f:
            f.write(json.dumps({"probes": len(source.attached), "attached": sorted(source.attached),
                                "fentry": sorted(source.fentry), "missing": source.missing}) + "\n")
    except OSError as e:
        source.close()
        raise LoadError(f"cannot write the ready file {path}: {e.strerror}") from None


def drive(items, on_item, duration, on_heartbeat=lambda: None):
    """Feed items (None: a heartbeat) to on_item until they end, the duration
    ends, or Ctrl-C or SIGTERM."""
    catch_stop_signals()
    Stop.deferred = False
    deadline = time.monotonic() + duration if duration else None
    seen = Stop.acted
    try:
        for item in items:
            if Stop.signals > seen:   # its exception was swallowed on the way, or it came before
                break
            if item is not None:
                with stop_deferred():
                    on_item(item)
                if Stop.signals > seen:
                    break
                continue
            on_heartbeat()
            if deadline and time.monotonic() >= deadline:
                break
    except Stop:
        pass
    Stop.acted = Stop.signals


def finish(source, on_record):
    """After the stop: the records still waiting. A second Ctrl-C or SIGTERM
    skips them; returns how many were skipped."""
    seen = Stop.signals
    try:
        for raw in source.drain():
            if Stop.signals > seen:
                raise Stop()
            with stop_deferred():
                on_record(raw)
    except Stop:
        return source.discard()
    finally:
        release_stop_signals()
    return 0


@dataclass
class Outcome:
    """How a flow or record run ended, for its summary line."""
    shown: int = 0          # trees shown (flow) or records written (record)
    malformed: int = 0      # records that could not be parsed (flow)
    skipped: int = 0        # waiting records skipped by a second stop
    counters: dict = None   # the kernel's lost/truncated/incomplete


def read_records(source, on_record, duration, on_heartbeat=lambda: None):
    """drive() over source.records(), then finish(); the Outcome's skipped
    and counters."""
    drive(source.records(), on_record, duration, on_heartbeat)
    skipped = finish(source, on_record)
    on_heartbeat()
    return Outcome(skipped=skipped, counters=source.counters())


def flow(source, filters, show, on_malformed, duration, on_heartbeat=lambda: None, exports=(), redact=None):
    """Trees of source that pass filters, each to show(tree, capture) and to
    every exports' add(tree, capture) (capture: the records.Capture of its
    message bytes); a record that cannot be parsed to
    on_malformed(ValueError). Each record passes through redact first
    (default: redact.redactor(zero_unused=False), its secrets overwritten).
    Returns the Outcome."""
    from nltrace.links import Links
    from nltrace.redact import redactor
    from nltrace.trees import GenlFamilies, assemble
    shown = malformed = 0
    links = Links()
    redact = redact or redactor(zero_unused=False)
    families = GenlFamilies(redact.redactor.families)    # live: the kernel's list, asked before arming

    def on_record(raw):
        nonlocal shown, malformed
        raw = redact(raw)
        try:
            rec = records.parse_record(raw)
            tree = links.add(assemble(rec, source.symbolize, families))
        except ValueError as e:
            malformed += 1
            on_malformed(e)
            return
        if filters.match(tree):
            shown += 1
            capture = records.capture_of(rec)
            show(tree, capture)
            for export in exports:
                export.add(tree, capture)

    outcome = read_records(source, on_record, duration, on_heartbeat)
    outcome.shown, outcome.malformed = shown, malformed
    return outcome


def record(source, writer, duration, redact=None):
    """Raw records of source into writer (a StreamWriter), each handler's
    name in a SYMBOLS frame before the first record that needs it, each
    record through redact first (default: a redact.redactor()). Returns
    the Outcome (shown: records written)."""
    from nltrace.redact import redactor
    known = set()
    written = 0
    redact = redact or redactor()

    def on_record(raw):
        nonlocal written
        raw = redact(raw)
        rec = records.parse_record(raw)
        if rec.handler and rec.handler not in known:
            known.add(rec.handler)
            name = source.symbolize(rec.handler)
            if name:
                writer.symbols({rec.handler: name})
        writer.record(raw)
        written += 1

    outcome = read_records(source, on_record, duration)
    writer.counters(outcome.counters)
    outcome.shown = written
    return outcome


def latency(source, by, interval, duration, show, functions=None):
    """Histograms of source grouped by `by`, each interval's to
    show(ts_ns, [Histogram]): every interval (live with -i, or each frame of
    a stream), then at the end (live). functions: only these functions'
    (--by function; the roots attached for them are timed too)."""
    from nltrace.histograms import group, interval_delta
    previous = {}

    def report(snapshot):
        nonlocal previous
        histograms = group(interval_delta(snapshot.counts, previous), snapshot.maxima, by)
        if functions is not None:
            histograms = [h for h in histograms if h.key in functions]
        previous = snapshot.counts
        show(snapshot.ts_ns, histograms)

    drive(source.histograms(interval), report, duration)
    release_stop_signals()
    final = source.final_histograms()
    if final is not None:
        report(final)
