"""Host tests' fixtures: the streams recorded from real kernels in tests/fixtures/."""

import glob
import os

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
# What nltrace-agent streamed on the ARMv6 stand-in (tests/fixtures/README.md)
AGENT_FLOW_STREAM = os.path.join(FIXTURES, "agent-flow-armv6-6.1.0-50-rpi.nltrace")
AGENT_LATENCY_STREAM = os.path.join(FIXTURES, "agent-latency-armv6-6.1.0-50-rpi.nltrace")


@pytest.fixture(scope="session")
def recorded_stream():
    """A stream recorded by `nltrace record` in the test VM while tools/traffic
    ran (tools/record-fixture): real kernel records, not made up."""
    paths = sorted(glob.glob(os.path.join(FIXTURES, "flow-*.nltrace")))
    assert paths, f"no recorded stream in {FIXTURES}; make one with: tools/vm tools/record-fixture"
    return paths[-1]
