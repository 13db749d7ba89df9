"""AgentSource (nltrace/sources/agent.py), the pipe and its stop, on the
host: a stand-in for nltrace-agent, a shell script, writes a stream recorded
from a real kernel (tests/fixtures) as the agent would, then waits for its
SIGTERM. tests/vm/test_agent.py runs the real agent on a real kernel."""

import os
import stat
import struct
import time

import pytest

from nltrace import records
from nltrace.errors import LoadError
from nltrace.sources.agent import AgentSource
from nltrace.sources.stream import StreamSource
from nltrace.stream_format import StreamWriter


def stand_in(tmp_path, body):
    path = tmp_path / "agent"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def replays(path, ready):
    """The stand-in's script: once it handles SIGTERM, the ready file (as the
    agent's --ready-file), the stream, then quiet until SIGTERM, then the end."""
    return f"sleep 600 >/dev/null & trap 'kill $!; exit 0' TERM; cat {path}; touch {ready}; wait"


def wait_for(path):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.01)


def recorded_records(path):
    stream = StreamSource(path, "flow")
    try:
        return list(stream.records()), stream.counters()
    finally:
        stream.close()


def test_records_heartbeats_and_the_stop(tmp_path, recorded_stream):
    """Every record of the stream, in order; heartbeats while it is quiet;
    drain() stops it with SIGTERM and reads to the end of its stream."""
    expected, counters = recorded_records(recorded_stream)
    agent = stand_in(tmp_path, replays(recorded_stream, tmp_path / "ready"))
    source = AgentSource(agent, [], "flow")
    got, heartbeats = [], 0
    for item in source.records():
        if item is None:
            heartbeats += 1
            if len(got) == len(expected) and heartbeats > 3:
                break
        else:
            got.append(item)
    assert got == expected
    assert list(source.drain()) == []
    assert source.counters() == counters
    source.close()


def test_an_agent_that_fails_is_a_load_error(tmp_path):
    source = AgentSource(stand_in(tmp_path, "echo 'nltrace-agent: no kprobes' >&2; exit 3"), [], "flow")
    with pytest.raises(LoadError, match="exit status 3"):
        list(source.records())


def test_a_missing_agent_is_a_load_error(tmp_path):
    with pytest.raises(LoadError, match="cannot run"):
        AgentSource(os.path.join(tmp_path, "nltrace-agent"), [], "flow")


def test_latency_snapshots_and_the_last_at_the_stop(tmp_path):
    """latency: each HISTOGRAMS frame is a snapshot; final_histograms() stops
    the agent and returns its last (the recorded armv6 agent's stream)."""
    fixtures = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
    path = next(os.path.join(fixtures, f) for f in sorted(os.listdir(fixtures)) if f.startswith("agent-latency-"))
    stream = StreamSource(path, "latency")
    snapshots = list(stream.histograms())
    stream.close()
    assert snapshots
    source = AgentSource(stand_in(tmp_path, replays(path, tmp_path / "ready")), [], "latency")
    wait_for(tmp_path / "ready")
    assert source.final_histograms() == snapshots[-1]
    source.close()


def test_stopped_before_its_stream_began(tmp_path):
    """A stop that comes before the agent set its handlers (SIGTERM kills it)
    ends the stream, and is no failure."""
    source = AgentSource(stand_in(tmp_path, "exec sleep 600"), [], "flow")
    assert list(source.drain()) == []
    source.close()


def test_this_process_own_requests_are_dropped(tmp_path, recorded_stream):
    """The agent traces nltrace too (its genl family query, made while the
    agent attaches): records of this process are not the user's. The
    recorded stream, with its first record's pid made this process's."""
    expected, _ = recorded_records(recorded_stream)
    mine = bytearray(expected[0])
    struct.pack_into("=I", mine, records.ffi.offsetof("struct nlt_record", "pid"), os.getpid())
    path = tmp_path / "mine.nltrace"
    with open(path, "wb") as f:
        writer = StreamWriter(f, {"mode": "flow"})
        for raw in [bytes(mine)] + expected[1:]:
            writer.record(raw)
    source = AgentSource(stand_in(tmp_path, replays(path, tmp_path / "ready")), [], "flow")
    wait_for(tmp_path / "ready")
    assert list(source.drain()) == expected[1:]
    source.close()
