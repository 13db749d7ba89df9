"""The command line: parse the options, call the engine, print what it gives
back; every NltraceError becomes one message and an exit status here."""

import dataclasses
import json
import os
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from nltrace import run
from nltrace.catalogue import match_functions
from nltrace.config import SNAPLEN_MAX, SNAPLEN_MIN, TraceConfig
from nltrace.errors import BadInput, Interrupted, NltraceError
from nltrace.sources.stream import StreamSource


class Commands(click.Group):
    """nltrace's commands, with the engine's errors turned into a plain
    message and an exit status instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NltraceError as e:
            click.echo(f"nltrace: {e}", err=True)
            sys.exit(e.exit_status)
        except BrokenPipeError:   # the reader went away (nltrace flow | head)
            # stdout to /dev/null, or flushing it at exit fails again (status 120)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:  # Ctrl-C before anything was attached (after, it is run.Stop)
            click.echo("nltrace: interrupted", err=True)
            sys.exit(Interrupted.exit_status)


unredacted_secrets_option = click.option(
    "--unredacted-secrets", is_flag=True,
    help="Keep the key bytes some messages carry (IPsec SAs, WireGuard, MACsec, Wi-Fi, SRv6 HMAC, TIPC keys) "
         "in what this shows and writes; without it they are overwritten with '*'.")


def _power_of_two(_ctx, _param, value):
    if value < 1 or value & (value - 1):
        raise click.BadParameter("must be a power of two: 1, 2, 4, ...")
    return value


# 32 MiB hold a burst of about 60k trees of `ip link show` while the reader stands back (pacing.py).
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
    click.option("--type", "msg_type", help="Only this message type: RTM_GETLINK, NFT_MSG_NEWTABLE, "
                 "a genl family (ethtool) or family/command (ethtool/ETHTOOL_MSG_LINKINFO_GET), or a number."),
    click.option("-d", "--duration", type=float, help="Stop after this many seconds."),
)


def filter_options(f):
    for option in reversed(FILTER_OPTIONS):
        f = option(f)
    return f


snaplen_option = click.option(
    "--snaplen", type=click.IntRange(SNAPLEN_MIN, SNAPLEN_MAX), default=SNAPLEN_MAX, show_default=True,
    metavar="N", help=f"Capture at most N bytes of each message ({SNAPLEN_MIN}: headers only, no payloads).")

ready_file_option = click.option(
    "--ready-file", type=click.Path(dir_okay=False), metavar="PATH",
    help="Create PATH (one line of JSON) once every probe is attached, for scripts that "
         "wait for the tracer before they start their load.")


agent_option = click.option(
    "--agent", "agent_path", type=click.Path(exists=True, dir_okay=False), metavar="PATH",
    help="Trace with this nltrace-agent, built for this kernel (nltrace build --target x86_64), instead of "
         "compiling with BCC: attached in about a second, with kprobes and the agent's probe set.")


@click.group(cls=Commands)
@click.version_option(package_name="nltrace")
def main():
    """See what the Linux kernel does with netlink messages."""


def open_live(config, ready_file, meanwhile=lambda: None):
    """run.open_live(), and the lines that say how it went: (the source,
    what meanwhile returned)."""
    source, prepared = run.open_live(config, meanwhile)
    if source.stale_removed:
        click.echo(f"nltrace: removed {source.stale_removed} kprobe events that a killed nltrace left in tracefs",
                   err=True)
    if source.stale_left:
        click.echo("nltrace: could not remove kprobe events that a killed nltrace left in tracefs: "
                   + "; ".join(source.stale_left), err=True)
    if source.fentry_failure:
        click.echo(f"nltrace: fentry/fexit could not be used, kprobes instead: {source.fentry_failure}",
                   err=True)
    missing = ", ".join(sorted(source.missing)) or "none"
    click.echo(f"Tracing netlink: {len(source.attached)} probes attached ({len(source.fentry)} by "
               f"fentry/fexit), not traced: {missing}. Ctrl-C to end.", err=True)
    sys.stderr.flush()
    if ready_file:
        run.write_ready_file(ready_file, source)
    return source, prepared


def live_redactor(unredacted_secrets, **kwargs):
    """open_live's meanwhile for a command that redacts: its redactor
    (redact.redactor_for_run, which asks the kernel for its genl families)."""
    def make():
        from nltrace.redact import redactor_for_run
        return redactor_for_run(unredacted_secrets, live=True, **kwargs)
    return make


def skipped_text(skipped):
    return f", {skipped} skipped unread (interrupted while catching up)" if skipped else ""


@main.command()
@filter_options
@click.option("--errors-only", is_flag=True, help="Only messages that failed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tree per line.")
@click.option("--input", "input_path", metavar="FILE|-",
              help="Render a recorded stream (nltrace record, nltrace-agent) instead of tracing.")
@agent_option
@click.option("--no-recv", is_flag=True, help="Do not start trees at netlink_recvmsg.")
@click.option("--all-probes", is_flag=True, help="Also the steps that add little and cost as much as "
              "the others: rtnetlink_rcv, genl_rcv, __netlink_sendskb (see nltrace doctor).")
@buffer_option
@kprobes_option
@snaplen_option
@ready_file_option
@click.option("--pcapng", "pcapng_path", metavar="FILE", help="Also write the trees' messages to FILE for "
              "Wireshark (as nltrace export --to pcapng).")
@click.option("--perfetto", "perfetto_path", metavar="FILE", help="Also write the trees to FILE as a Perfetto "
              "trace (as nltrace export --to perfetto).")
@unredacted_secrets_option
def flow(pid, comm, protocol, msg_type, duration, errors_only, as_json, input_path, agent_path, no_recv,
         all_probes, buffer_mb, kprobes, snaplen, ready_file, pcapng_path, perfetto_path, unredacted_secrets):
    """Live call trees, one per netlink message."""
    from nltrace.filters import Filters
    from nltrace.views import json_line, render_tree
    filters = Filters(pid, comm, protocol, msg_type, errors_only, no_recv)
    if agent_path:
        given = click.get_current_context().get_parameter_source
        if input_path or all_probes or kprobes or given("buffer_mb") != click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--agent attaches the probes it was built with, to its own ring buffer: "
                                   "not with --input, --all-probes, --kprobes or --buffer-mb")
    if input_path or agent_path:
        # the agent first: it attaches while the decoding loads (its trees of
        # this process's own family query are dropped: sources/agent.py); a
        # stop meanwhile ends the trace once it runs
        run.defer_stops()
        source = (run.open_agent(agent_path, TraceConfig.for_flow(pid, comm, no_recv, snaplen=snaplen),
                                 ready_file, duration, protocol=protocol, msg_type=msg_type)
                  if agent_path else StreamSource(input_path, "flow"))
        from nltrace.redact import redactor_for_run
        redact = redactor_for_run(unredacted_secrets, live=bool(agent_path))
    else:
        source, redact = open_live(TraceConfig.for_flow(pid, comm, no_recv, all_probes, buffer_mb, kprobes,
                                                        snaplen), ready_file, live_redactor(unredacted_secrets))
    out = Console(highlight=False, soft_wrap=True)
    t0 = None

    def show(tree, _capture):
        nonlocal t0
        if as_json:
            sys.stdout.write(json_line(tree) + "\n")   # flushed once per batch: a write per tree costs
        else:
            t0 = tree["ts_ns"] if t0 is None else t0
            out.print(render_tree(tree, t0), crop=False)

    exports = [(fmt, path) for fmt, path in (("pcapng", pcapng_path), ("perfetto", perfetto_path)) if path]
    outcome = run_flow(source, filters, show, duration, exports, redact)
    counts = outcome.counters
    click.echo(f"nltrace: {outcome.shown} trees shown, {counts.get('lost', 0)} lost, "
               f"{counts.get('truncated', 0)} truncated, {counts.get('incomplete', 0)} incomplete"
               + skipped_text(outcome.skipped), err=True)
    if outcome.malformed:
        raise NltraceError(f"{outcome.malformed} malformed records were skipped")


def run_flow(source, filters, show, duration, exports, redact):
    """run.flow() into show and the exports ((format, path) each); what each
    export wrote, on stderr."""
    from nltrace.exports import open_exports

    def on_malformed(error):
        click.echo(f"nltrace: skipped a malformed record: {error}", err=True)

    writers = []
    try:
        with open_exports(exports, source.realtime_offset_ns) as writers:
            return run.flow(source, filters, show, on_malformed, duration, on_heartbeat=sys.stdout.flush,
                            exports=writers, redact=redact)
    finally:
        source.close()
        for writer in writers:    # also when the input ends in the middle: what was written is whole
            click.echo(f"nltrace: wrote {writer.summary()}", err=True)


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.option("--to", "fmt", type=click.Choice(["pcapng", "perfetto"]), required=True,
              help="pcapng: the messages, for Wireshark/tshark; perfetto: the call trees, for ui.perfetto.dev.")
@click.option("-o", "--output", required=True, metavar="FILE|-", help="Where to write it.")
@unredacted_secrets_option
def export(input_path, fmt, output, unredacted_secrets):
    """Export a recorded stream (nltrace record, nltrace-agent; - for stdin)."""
    from nltrace.filters import Filters
    from nltrace.redact import redactor_for_run
    redact = redactor_for_run(unredacted_secrets, live=False)
    outcome = run_flow(StreamSource(input_path, "flow"), Filters(), lambda tree, capture: None, None,
                       [(fmt, output)], redact)
    if outcome.malformed:
        raise NltraceError(f"{outcome.malformed} malformed records were skipped")


@main.command()
@click.option("-o", "--output", "output", required=True, metavar="FILE|-", help="Where to write the stream.")
@click.option("-p", "--pid", type=int, help="Only this process (tgid).")
@click.option("-d", "--duration", type=float, help="Stop after this many seconds.")
@click.option("--no-recv", is_flag=True, help="Do not start trees at netlink_recvmsg.")
@click.option("--all-probes", is_flag=True, help="As for flow.")
@buffer_option
@kprobes_option
@snaplen_option
@ready_file_option
@unredacted_secrets_option
def record(output, pid, duration, no_recv, all_probes, buffer_mb, kprobes, snaplen, ready_file, unredacted_secrets):
    """Capture raw records to a stream, for `flow --input` later or elsewhere."""
    from nltrace.output import close_output, open_output
    from nltrace.sources.live import stream_meta
    from nltrace.stream_format import StreamWriter
    out = open_output(output)   # before the compile: a wrong path fails at once
    source, redact = open_live(TraceConfig.for_flow(pid, None, no_recv, all_probes, buffer_mb, kprobes, snaplen),
                               ready_file, live_redactor(unredacted_secrets, writes_records=True))
    try:
        outcome = run.record(source, StreamWriter(out, stream_meta(source)), duration, redact)
    finally:
        source.close()
        close_output(out, output)
    click.echo(f"nltrace: {outcome.shown} records written, {outcome.counters['lost']} lost"
               + skipped_text(outcome.skipped), err=True)


@main.command()
@filter_options
@click.option("--by", type=click.Choice(["function", "message", "process", "rtnl"]), default="message",
              show_default=True, help="Group by catalogue function, message type (RTM_* or genl "
              "family/cmd), process (comm), or the RTNL lock wait per message type.")
@click.option("--functions", "function_patterns", metavar="PATTERN[,PATTERN...]",
              help="With --by function: time only these catalogue functions (shell patterns, e.g. "
              "'rtnetlink_rcv_msg,genl_*'); only they and the roots of their trees are attached, so "
              "you pay for what you ask.")
@click.option("-i", "--interval", type=float, help="Print every this many seconds (each shows that interval).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per interval.")
@click.option("--input", "input_path", metavar="FILE|-",
              help="Render the histograms of a recorded stream (nltrace-agent --latency) instead of tracing.")
@agent_option
@kprobes_option
@ready_file_option
@click.option("--prometheus", "prometheus_at", metavar="[ADDR:]PORT",
              help="Serve the histograms for Prometheus on PORT (all addresses, or ADDR), refreshed each interval.")
@click.option("--prometheus-textfile", metavar="FILE",
              help="Write the histograms to FILE (*.prom) each interval, for node-exporter's textfile collector.")
@click.option("--label", "labels", multiple=True, metavar="NAME=VALUE",
              help="Add this label to every metric (e.g. board=bmc1 for a stream read with --input).")
def latency(pid, comm, protocol, msg_type, duration, by, function_patterns, interval, as_json, input_path, agent_path,
            kprobes, ready_file, prometheus_at, prometheus_textfile, labels):
    """Latency histograms, aggregated in the kernel.

    log2 histograms of how long the kernel spent: per traced function, per sent
    message (its whole netlink_sendmsg), per process, or waiting for the RTNL
    lock. p50/p90/p99 are estimates from the log2 buckets (interpolated inside
    the bucket, never above the exact max); count and max are exact. Without
    -i it prints once, at the end (Ctrl-C or -d). With --input, each
    histograms frame of the stream is one interval. With --prometheus or
    --prometheus-textfile, the metrics count from the start and are
    refreshed every interval (-i, 15 s unless given).
    """
    from nltrace.views import render_histograms
    console = Console(highlight=False, width=80)

    def show(ts_ns, histograms):
        from nltrace.histograms import pick_unit   # loaded by now (run.AFTER_ATTACHING)
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
            raise BadInput("with --input, filters and timing were the agent's to apply "
                           "(nltrace-agent --latency -p/-c/-i/-d)")
        source = StreamSource(input_path, "latency")
    metrics = None
    if labels and not (prometheus_at or prometheus_textfile):
        raise BadInput("--label names metrics: give --prometheus or --prometheus-textfile too")
    if prometheus_at or prometheus_textfile:
        from nltrace.exports.prometheus import METRICS_INTERVAL, MetricsExport
        metrics = MetricsExport(by, labels, prometheus_at, prometheus_textfile)
        interval = interval or METRICS_INTERVAL
    if agent_path and (input_path or kprobes or function_patterns):
        raise click.UsageError("--agent attaches the probes it was built with: "
                               "not with --input, --kprobes or --functions")
    functions = None
    if function_patterns:
        if by != "function" or input_path:
            raise click.UsageError("--functions chooses what --by function attaches: not with another --by "
                                   "or --input")
        functions = match_functions(p.strip() for p in function_patterns.split(","))
    if not input_path:
        from nltrace.filters import resolve_type
        config = TraceConfig.for_latency(by, resolve_type(msg_type, protocol), pid, comm, kprobes, functions)
        if agent_path:
            source = run.open_agent(agent_path, config, ready_file, duration, interval, protocol, msg_type)
        else:
            source, _ = open_live(config, ready_file)

    def show_all(ts_ns, histograms):
        show(ts_ns, histograms)
        if metrics:
            metrics.update(ts_ns, histograms)

    try:
        run.latency(source, by, interval, duration, show_all, functions)
    finally:
        source.close()
        if metrics:
            metrics.close()


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
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The target kernel's .config (default: the .config beside --vmlinux, else the config "
              "embedded in it); a kernel without what the agent needs is refused.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write nltrace-agent into.")
def build(target, vmlinux, btf, system_map, release, sysroot, config_path, output):
    """Build a static nltrace-agent for another machine's kernel.

    Copy OUTPUT/nltrace-agent to the target and run it there; read what it
    writes with `nltrace flow --input` or `nltrace latency --input`:

      ssh root@bmc /tmp/nltrace-agent | nltrace flow --input -
    """
    from nltrace.agent.build import build as build_agent
    if bool(vmlinux) == bool(btf) or bool(btf) != bool(system_map):
        raise NltraceError("give either --vmlinux, or --btf with --system-map")
    summary = build_agent(target, output, vmlinux=vmlinux, btf=btf, system_map=system_map,
                          release=release, sysroot=sysroot, config_path=config_path,
                          log=lambda m: click.echo(m, err=True))
    absent = sorted(n for n, s in summary["probes"].items() if not s)
    click.echo(f"{output}/nltrace-agent: {summary['agent_bytes']} bytes, {target}, kernel "
               f"{summary['kernel_release']}; absent from the kernel image: {', '.join(absent) or 'none'}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
def doctor(as_json):
    """Report what this kernel allows, and what to do about each missing piece."""
    from nltrace.doctor import catalogue_rows
    from nltrace.kernel import features
    report = features.probe()
    if as_json:
        click.echo(json.dumps({"release": report.release, "arch": report.arch, "can_trace": report.can_trace,
                               "checks": [dataclasses.asdict(c) for c in report.checks],
                               "probes": [dataclasses.asdict(r) for r in catalogue_rows(report)]}))
        sys.exit(0 if report.can_trace else 1)
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
        for row in catalogue_rows(report):
            if row.attach_to:
                where = row.attach_to + (f" ({row.note})" if row.note else "")
            else:
                where = f"[yellow]not traceable: {row.note or 'left out of trees'}[/]"
            funcs.add_row(row.function, row.kind, where, row.role)
        console.print(funcs)
    if report.can_trace:
        console.print("[green]nltrace flow can run here.[/]")
        return
    console.print("[red]nltrace flow cannot run here.[/] " + features.VM_HINT)
    sys.exit(1)
