"""The event sources and the contract they keep: what the kernel programs
made, read live (live.py, BCC) or back from a stream (stream.py, a file or a
pipe written by `nltrace record` or nltrace-agent)."""

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Protocol, runtime_checkable


@dataclass(frozen=True)
class Snapshot:
    """The latency maps at one moment: {raw key: cumulative count} and {raw
    key: max ns since the previous snapshot}; a raw key is (kind, slot, func,
    protocol, type, cmd, name), as records.hist_key() makes it."""
    ts_ns: int
    counts: dict
    maxima: dict


@runtime_checkable
class Source(Protocol):
    """What `flow`, `record` and `latency` read, live or recorded. Iterators
    yield None as a heartbeat when nothing is waiting, so that the reader can
    check its deadline (run.drive)."""

    mode: str   # "flow" (records) or "latency" (histograms)
    # CLOCK_REALTIME - CLOCK_MONOTONIC when the trace began, to date the records'
    # monotonic timestamps; None for a stream that did not say.
    realtime_offset_ns: Optional[int]

    def records(self) -> Iterator[Optional[bytes]]:
        """Raw struct nlt_record bytes, in commit order, until the input ends."""

    def drain(self) -> Iterable[bytes]:
        """At the stop: the records that were already waiting, read without waiting."""

    def discard(self) -> int:
        """At a second stop: skip the waiting records; how many there were."""

    def histograms(self, interval: Optional[float]) -> Iterator[Optional[Snapshot]]:
        """A Snapshot per interval (live: every `interval` s, none without one;
        a stream: one per HISTOGRAMS frame)."""

    def final_histograms(self) -> Optional[Snapshot]:
        """At the end: the live maps as they are then; a stream's last frame
        already was its end (None)."""

    def counters(self) -> dict:
        """The kernel's counters: {"lost", "truncated", "incomplete"}."""

    def symbolize(self, addr: int) -> Optional[str]:
        """The kernel function at addr, or None."""

    def close(self) -> None:
        """Detach (live), close the file (stream)."""
