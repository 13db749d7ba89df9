"""`nltrace doctor`'s catalogue table: for each probe, how this kernel lets it be
attached and what it is for (the checks themselves are kernel/features.py)."""

from dataclasses import dataclass

from nltrace.catalogue import CATALOGUE, INLINED_NODES, needed


@dataclass(frozen=True)
class ProbeRow:
    function: str
    kind: str          # fentry+fexit, kprobe+kretprobe, kprobe, raw_tracepoint
    attach_to: str     # the symbol, or None when not traceable here
    note: str          # why it is not attached, or where an inlined one is seen, or ""
    role: str


def catalogue_rows(report):
    """One ProbeRow per catalogue probe, for a features.Report."""
    rows = []
    for p in CATALOGUE:
        sym = report.symbols.get(p.name)
        if not sym:
            stand_in = INLINED_NODES.get(p.name)
            note = f"inlined: its node is seen at {stand_in}" if report.symbols.get(stand_in) else ""
        else:
            note = "" if needed(p, report.symbols) else "not attached: what it stands in for is traceable"
        kind = p.kind if p.kind != "function" else (
            "fentry+fexit" if p.name in report.fentry else "kprobe+kretprobe")
        rows.append(ProbeRow(p.name, kind, sym, note, p.role))
    return rows
