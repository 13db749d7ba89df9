"""The command line: nltrace flow | latency | record | doctor."""

import json
import signal
import sys
import time
from dataclasses import dataclass

import click
from rich.console import Console
from rich.table import Table

from nltrace import records
from nltrace.kernel import features
from nltrace.stream_format import (COUNTERS, HISTOGRAMS, RECORD, SYMBOLS, StreamError, StreamWriter,
                                    read_frames)
from nltrace.trees import assemble
from nltrace.views import json_line, render_histograms, render_tree


class Stop(BaseException):
    """Ctrl-C or SIGTERM. A BaseException, as KeyboardInterrupt is, so that an
    `except Exception` does not catch it; and counted in Stop.signals,
    because a bare `except:` (pyroute2 has some on the decoding path) can."""
    signals = 0


def _on_stop_signal(_signo, _frame):
    Stop.signals += 1
    raise Stop()


def catch_stop_signals():
    for signo in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signo, _on_stop_signal)


def release_stop_signals():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fail(message, code=1):
    click.echo(f"nltrace: {message}", err=True)
    sys.exit(code)


@dataclass
class Filters:
    pid: int = None
    comm: str = None
    protocol: str = None
    msg_type: str = None
    errors_only: bool = False
    no_recv: bool = False

    def match(self, tree):
        if self.no_recv and tree["root"]["func"] == "netlink_recvmsg":
            return False
        if self.pid is not None and tree["pid"] != self.pid:
            return False
        if self.comm is not None and tree["comm"] != self.comm:
            return False
        if self.protocol is not None and (tree["protocol"] or "").upper() not in (
                self.protocol.upper(), "NETLINK_" + self.protocol.upper()):
            return False
        if self.errors_only and not tree["error"]:
            return False
        if self.msg_type is not None:
            msg = tree["message"] or {}
            names = {str(msg.get("type")), str(msg.get("type_name")).upper()}
            if msg.get("family"):
                names |= {msg["family"].upper(), f"{msg['family']}/{msg.get('cmd_name') or msg['cmd']}".upper(),
                          f"{msg['family']}/{msg['cmd']}".upper()}
            if self.msg_type.upper() not in names:
                return False
        return True


class StreamSource:
    """Records or histograms read back from an nltrace stream (a file, or -
    for stdin), written by `nltrace record` or nltrace-agent."""

    def __init__(self, path):
        self.file = sys.stdin.buffer if path == "-" else open(path, "rb")
        self.frames = read_frames(self.file)
        _, self.meta = next(self.frames)
        self.mode = self.meta.get("mode", "flow")
        self._symbols = {}
        self._counters = {}

    def _payloads(self, wanted):
        for kind, payload in self.frames:
            if kind == wanted:
                yield payload
            elif kind == SYMBOLS:
                self._symbols.update({int(a, 16): n for a, n in payload.items()})
            elif kind == COUNTERS:
                self._counters = payload

    def records(self):
        return self._payloads(RECORD)

    def histograms(self):
        """(ts_ns, {raw key: cumulative count}, {raw key: max ns}) per HISTOGRAMS frame."""
        return self._payloads(HISTOGRAMS)

    def symbolize(self, addr):
        return self._symbols.get(addr)

    def drain(self):
        return ()   # records() already read to the end

    def discard(self):
        return 0

    def counters(self):
        return self._counters

    def close(self):
        if self.file is not sys.stdin.buffer:
            self.file.close()


def open_stream(path, command):
    """A StreamSource for `command --input path`, or a plain message and exit 1."""
    try:
        source = StreamSource(path)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    except StreamError as e:
        fail(f"{path}: {e}")
    if source.mode != command:
        fail(f"{path} holds a {source.mode} stream: read it with nltrace {source.mode} --input")
    return source


def open_live_source(pid=None, comm=None, skip_recv=False, latency=None, on_demand=(), only=None,
                     ring_mb=None, kprobes=False):
    """Check the kernel, then compile and attach (BccSource's arguments;
    kprobes: no fentry/fexit).
    Exits with a plain message (never a traceback) when this kernel or
    process cannot trace."""
    report = features.probe()
    if not report.can_trace:
        lines = [f"cannot trace on this kernel ({report.release}):"]
        lines += [f"  - {c.name}: {c.detail}. Fix: {c.fix}" for c in report.failed()]
        lines.append("Run `nltrace doctor` for the full report.")
        fail("\n".join(lines))
    from nltrace.sources.live import AttachError, BccSource
    catch_stop_signals()
    try:
        source = BccSource(report.symbols, frozenset() if kprobes else report.fentry, pid=pid, comm=comm,
                           skip_recv=skip_recv, latency=latency, on_demand=on_demand, only=only,
                           ring_mb=ring_mb)
    except Stop:
        fail("interrupted before tracing began; nothing is left attached", code=130)
    except AttachError as e:
        fail(str(e))
    except Exception as e:   # BCC reports compile and load failures as bare Exception
        fail(f"could not load the BPF programs: {e}")
    if source.fentry_failure:
        click.echo(f"nltrace: fentry/fexit could not be used, kprobes instead: {source.fentry_failure}",
                   err=True)
    missing = ", ".join(sorted(source.missing)) or "none"
    click.echo(f"Tracing netlink: {len(source.attached)} probes attached ({len(source.fentry)} by "
               f"fentry/fexit), not traced: {missing}. Ctrl-C to end.", err=True)
    sys.stderr.flush()
    return source


def flow_probes(all_probes):
    from nltrace.catalogue import FLOW_DEFAULT
    return None if all_probes else FLOW_DEFAULT


def drive(source, on_record, duration, on_batch=lambda: None):
    """Feed records to on_record until the duration ends, the input ends,
    Ctrl-C or SIGTERM, then the records still waiting; on_batch after each
    batch the source delivered. A second Ctrl-C or SIGTERM skips the waiting
    records. Returns how many were skipped."""
    catch_stop_signals()
    deadline = time.monotonic() + duration if duration else None
    skipped = 0
    try:
        seen = Stop.signals
        try:
            for raw in source.records():
                if Stop.signals > seen:   # its exception was swallowed on the way
                    break
                if raw is not None:
                    on_record(raw)
                    continue
                on_batch()
                if deadline and time.monotonic() >= deadline:
                    break
        except Stop:
            pass
        seen = Stop.signals
        try:
            for raw in source.drain():
                if Stop.signals > seen:
                    raise Stop()
                on_record(raw)
        except Stop:
            skipped = source.discard()
    finally:
        release_stop_signals()
    on_batch()
    return skipped


def skipped_text(skipped):
    return f", {skipped} skipped unread (interrupted while catching up)" if skipped else ""


def _power_of_two(_ctx, _param, value):
    if value < 1 or value & (value - 1):
        raise click.BadParameter("must be a power of two: 1, 2, 4, ...")
    return value


# 32 MiB hold a burst of about 90k trees while the reader stands back (pacing.py).
buffer_option = click.option(
    "--buffer-mb", type=int, default=32, show_default=True, callback=_power_of_two, metavar="N",
    help="The kernel ring buffer, in MiB (a power of two). It holds a burst while nltrace "
         "stands back; what it cannot hold is lost, and counted.")

kprobes_option = click.option(
    "--kprobes", is_flag=True,
    help="Probe with kprobes and kretprobes only, as on kernels without BPF trampolines "
         "(fentry/fexit cost less; nltrace doctor shows which functions use them).")

FILTER_OPTIONS = (
    click.option("-p", "--pid", type=int, help="Only this process (tgid)."),
    click.option("-c", "--comm", help="Only this command name."),
    click.option("--protocol", help="Only this protocol: ROUTE, GENERIC, NETLINK_USERSOCK, ..."),
    click.option("--type", "msg_type", help="Only this message type: RTM_GETLINK, nlctrl, "
                 "nlctrl/CTRL_CMD_GETFAMILY, or a number."),
    click.option("-d", "--duration", type=float, help="Stop after this many seconds."),
)


def filter_options(f):
    for option in reversed(FILTER_OPTIONS):
        f = option(f)
    return f


@click.group()
@click.version_option(package_name="nltrace")
def main():
    """See what the Linux kernel does with netlink messages."""


@main.command()
@filter_options
@click.option("--errors-only", is_flag=True, help="Only messages that failed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tree per line.")
@click.option("--input", "input_path", metavar="FILE|-",
              help="Render a recorded stream (nltrace record, nltrace-agent) instead of tracing.")
@click.option("--no-recv", is_flag=True, help="Do not start trees at netlink_recvmsg.")
@click.option("--all-probes", is_flag=True, help="Also the steps that add little and cost as much as "
              "the others: rtnetlink_rcv, genl_rcv, __netlink_sendskb (see nltrace doctor).")
@buffer_option
@kprobes_option
def flow(pid, comm, protocol, msg_type, duration, errors_only, as_json, input_path, no_recv, all_probes,
         buffer_mb, kprobes):
    """Live call trees, one per netlink message."""
    filters = Filters(pid, comm, protocol, msg_type, errors_only, no_recv)
    if input_path:
        source = open_stream(input_path, "flow")
    else:
        source = open_live_source(pid, comm, no_recv, only=flow_probes(all_probes), ring_mb=buffer_mb,
                                  kprobes=kprobes)

    out = Console(highlight=False, soft_wrap=True)
    shown = malformed = 0
    t0 = None

    def on_record(raw):
        nonlocal shown, malformed, t0
        try:
            tree = assemble(records.parse_record(raw), source.symbolize)
        except ValueError as e:
            malformed += 1
            click.echo(f"nltrace: skipped a malformed record: {e}", err=True)
            return
        if not filters.match(tree):
            return
        shown += 1
        if as_json:
            sys.stdout.write(json_line(tree) + "\n")   # flushed once per batch: a write per tree costs
        else:
            t0 = tree["ts_ns"] if t0 is None else t0
            out.print(render_tree(tree, t0), crop=False)

    try:
        skipped = drive(source, on_record, duration, on_batch=sys.stdout.flush)
    except StreamError as e:
        click.echo(f"nltrace: {input_path}: {e}", err=True)
        source.close()
        sys.exit(1)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    counts = source.counters()
    source.close()
    click.echo(f"nltrace: {shown} trees shown, {counts.get('lost', 0)} lost, "
               f"{counts.get('truncated', 0)} truncated, {counts.get('incomplete', 0)} incomplete"
               + skipped_text(skipped), err=True)
    if malformed:
        fail(f"{malformed} malformed records were skipped")


@main.command()
@click.option("-o", "--output", "output", required=True, metavar="FILE|-", help="Where to write the stream.")
@click.option("-p", "--pid", type=int, help="Only this process (tgid).")
@click.option("-d", "--duration", type=float, help="Stop after this many seconds.")
@click.option("--no-recv", is_flag=True, help="Do not start trees at netlink_recvmsg.")
@click.option("--all-probes", is_flag=True, help="As for flow.")
@buffer_option
@kprobes_option
def record(output, pid, duration, no_recv, all_probes, buffer_mb, kprobes):
    """Capture raw records to a stream, for `flow --input` later or elsewhere."""
    from nltrace.sources.live import meta
    source = open_live_source(pid, skip_recv=no_recv, only=flow_probes(all_probes), ring_mb=buffer_mb,
                              kprobes=kprobes)
    out = sys.stdout.buffer if output == "-" else open(output, "wb")
    writer = StreamWriter(out, dict(meta(), probes=source.attached))
    known = set()
    count = 0

    def on_record(raw):
        nonlocal count
        rec = records.parse_record(raw)
        if rec.handler and rec.handler not in known:
            known.add(rec.handler)
            name = source.symbolize(rec.handler)
            if name:
                writer.symbols({rec.handler: name})
        writer.record(raw)
        count += 1

    skipped = drive(source, on_record, duration)
    counts = source.counters()
    writer.counters(counts)
    source.close()
    if out is not sys.stdout.buffer:
        out.close()
    click.echo(f"nltrace: {count} records written, {counts['lost']} lost" + skipped_text(skipped), err=True)


def resolve_type(msg_type, protocol):
    """--type and --protocol as the kernel compares them: {"protocol", "type", "cmd"}."""
    from pyroute2.netlink.rtnl import RTM_NAMES

    from nltrace.decode import CTRL_COMMANDS, PROTOCOL_VALUES
    want = {"protocol": None, "type": None, "cmd": None}
    if protocol:
        name = protocol.upper() if protocol.upper().startswith("NETLINK_") else "NETLINK_" + protocol.upper()
        if name not in PROTOCOL_VALUES:
            fail(f"unknown protocol {protocol!r}")
        want["protocol"] = PROTOCOL_VALUES[name]
    if not msg_type:
        return want
    if msg_type.isdigit():
        want["type"] = int(msg_type)
    elif msg_type.upper() in RTM_NAMES:
        want.update(protocol=0, type=RTM_NAMES[msg_type.upper()])
    else:
        family, _, cmd = msg_type.partition("/")
        want.update(protocol=16, type=genl_family_id(family))
        if cmd:
            commands = {n: v for v, n in CTRL_COMMANDS.items()} if family == "nlctrl" else {}
            if not cmd.isdigit() and cmd.upper() not in commands:
                fail(f"unknown command {cmd!r} of {family}: give its number")
            want["cmd"] = int(cmd) if cmd.isdigit() else commands[cmd.upper()]
    return want


def genl_family_id(name):
    """The id the running kernel gave a generic netlink family."""
    from pyroute2.netlink import NetlinkError, genlmsg
    from pyroute2.netlink.generic import GenericNetlinkSocket
    sock = GenericNetlinkSocket()
    try:
        sock.bind(name, genlmsg)   # resolves the family through CTRL_CMD_GETFAMILY
        return sock.prid
    except (NetlinkError, OSError):
        fail(f"no generic netlink family {name!r} on this kernel")
    finally:
        sock.close()


@main.command()
@filter_options
@click.option("--by", type=click.Choice(["function", "message", "process", "rtnl"]), default="message",
              show_default=True, help="Group by catalogue function, message type (RTM_* or genl "
              "family/cmd), process (comm), or the RTNL lock wait per message type.")
@click.option("-i", "--interval", type=float, help="Print every this many seconds (each shows that interval).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per interval.")
@click.option("--input", "input_path", metavar="FILE|-",
              help="Render the histograms of a recorded stream (nltrace-agent --latency) instead of tracing.")
@kprobes_option
def latency(pid, comm, protocol, msg_type, duration, by, interval, as_json, input_path, kprobes):
    """Latency histograms, aggregated in the kernel.

    log2 histograms of how long the kernel spent: per traced function, per sent
    message (its whole netlink_sendmsg), per process, or waiting for the RTNL
    lock. p50/p90/p99 are estimates from the log2 buckets (interpolated inside
    the bucket, never above the exact max); count and max are exact. Without
    -i it prints once, at the end (Ctrl-C or -d). With --input, each
    histograms frame of the stream is one interval.
    """
    from nltrace.histograms import group, interval_delta, pick_unit
    console = Console(highlight=False, width=80)
    previous = {}

    def report(ts_ns, counts, maxima):
        nonlocal previous
        histograms = group(interval_delta(counts, previous), maxima, by)
        previous = counts
        unit = pick_unit(histograms)
        if as_json:
            sys.stdout.write(json.dumps({"ts_ns": ts_ns, "by": by,
                                         "histograms": [h.to_json(unit) for h in histograms]},
                                        separators=(",", ":")) + "\n")
            sys.stdout.flush()
        else:
            title = f"{time.strftime('%H:%M:%S')}  by {by}" + ("" if histograms else "  (no samples)")
            for part in render_histograms(histograms, unit, by, title):
                console.print(part)

    if input_path:
        if pid or comm or protocol or msg_type or duration or interval:
            fail("with --input, filters and timing were the agent's to apply "
                 "(nltrace-agent --latency -p/-c/-i/-d)")
        source = open_stream(input_path, "latency")
        try:
            for ts_ns, counts, maxima in source.histograms():
                report(ts_ns, counts, maxima)
        except StreamError as e:
            fail(f"{input_path}: {e}")
        source.close()
        return

    want = resolve_type(msg_type, protocol)
    from nltrace.catalogue import MESSAGE_TIMING
    source = open_live_source(pid, comm, skip_recv=by != "function", latency=want,
                              on_demand=("mutex_lock",) if by == "rtnl" else (),
                              only=None if by == "function" else MESSAGE_TIMING, kprobes=kprobes)
    started = time.monotonic()
    deadline = started + duration if duration else None
    next_report = started + interval if interval else None
    try:
        while not deadline or time.monotonic() < deadline:
            wake = min(t for t in (next_report, deadline, time.monotonic() + 0.5) if t)
            time.sleep(max(wake - time.monotonic(), 0))
            if next_report and time.monotonic() >= next_report:
                report(time.monotonic_ns(), *source.read_histograms())
                next_report += interval
    except Stop:
        pass
    finally:
        release_stop_signals()
    report(time.monotonic_ns(), *source.read_histograms())   # the last (or only) interval
    source.close()


@main.command()
@click.option("--target", type=click.Choice(["armv6", "x86_64"]), required=True,
              help="armv6: 32-bit ARM BMCs (ASPEED AST2500); x86_64: hosts without LLVM or Python.")
@click.option("--vmlinux", type=click.Path(dir_okay=False),
              help="The target kernel's vmlinux with DWARF (e.g. from its -dbg package).")
@click.option("--btf", type=click.Path(dir_okay=False),
              help="Instead of --vmlinux: the target kernel's BTF (its /sys/kernel/btf/vmlinux) ...")
@click.option("--system-map", type=click.Path(dir_okay=False), help="... and its System.map (or its /proc/kallsyms).")
@click.option("--release", help="The kernel release, when the System.map's name does not tell it.")
@click.option("--sysroot", type=click.Path(file_okay=False),
              help="Target libraries: Debian's libbpf-dev, libelf-dev, zlib1g-dev unpacked "
              "(tools/arm/fetch makes one for armv6; x86_64 uses this machine's).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write nltrace-agent into.")
def build(target, vmlinux, btf, system_map, release, sysroot, output):
    """Build a static nltrace-agent for another machine's kernel.

    Copy OUTPUT/nltrace-agent to the target and run it there; read what it
    writes with `nltrace flow --input` or `nltrace latency --input`:

      ssh root@bmc /tmp/nltrace-agent | nltrace flow --input -
    """
    from nltrace.agent.build import BuildError
    from nltrace.agent.build import build as build_agent
    from nltrace.agent.kernel_image import ImageError
    if bool(vmlinux) == bool(btf) or bool(btf) != bool(system_map):
        fail("give either --vmlinux, or --btf with --system-map")
    try:
        summary = build_agent(target, output, vmlinux=vmlinux, btf=btf, system_map=system_map,
                              release=release, sysroot=sysroot, log=lambda m: click.echo(m, err=True))
    except (BuildError, ImageError) as e:
        fail(str(e))
    absent = sorted(n for n, s in summary["probes"].items() if not s)
    click.echo(f"{output}/nltrace-agent: {summary['agent_bytes']} bytes, {target}, kernel "
               f"{summary['kernel_release']}; absent from the kernel image: {', '.join(absent) or 'none'}")


@main.command()
def doctor():
    """Report what this kernel allows, and what to do about each missing piece."""
    report = features.probe()
    console = Console(highlight=False)
    console.print(f"kernel {report.release} ({report.arch})")
    table = Table(show_header=True, header_style="bold")
    for col in ("check", "state", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        state = "[green]ok[/]" if c.ok else ("[red]missing[/]" if c.needed else "[yellow]absent[/]")
        table.add_row(c.name, state, c.detail, "" if c.ok else c.fix)
    console.print(table)
    if report.symbols:
        funcs = Table(show_header=True, header_style="bold", title="probe catalogue")
        for col in ("function", "kind", "attach to", "role"):
            funcs.add_column(col, overflow="fold")
        from nltrace.catalogue import CATALOGUE, needed
        for p in CATALOGUE:
            sym = report.symbols.get(p.name)
            if not sym:
                sym = "[yellow]not traceable: left out of trees[/]"
            elif not needed(p, report.symbols):
                sym += " (not attached: what it stands in for is traceable)"
            kind = p.kind if p.kind != "function" else (
                "fentry+fexit" if p.name in report.fentry else "kprobe+kretprobe")
            funcs.add_row(p.name, kind, sym, p.role)
        console.print(funcs)
    if report.can_trace:
        console.print("[green]nltrace flow can run here.[/]")
        return
    console.print("[red]nltrace flow cannot run here.[/] " + features.VM_HINT)
    sys.exit(1)
