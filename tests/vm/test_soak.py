"""make soak's short form: flow and latency attached together for 20 s of
full-rate nlload requests; every request's tree shown or counted lost,
latency's count exact. Memory is printed, not judged: so short a run cannot
tell growth from warm-up (make soak runs ten minutes)."""

import json
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
from soak import soak  # noqa: E402

NLLOAD = os.path.join(ROOT, ".cache", "bench", "nlload")


@pytest.mark.long     # two tracers and their catch-up
def test_full_rate_with_flow_and_latency_attached():
    result = soak(NLLOAD, duration_s=20, warmup_s=5)
    print(json.dumps(result))
    assert result["requests"] > 0
    assert result["latency_count"] == result["requests"]
    assert result["flow_sends_shown"] <= result["requests"] <= result["flow_sends_shown"] + result["flow_lost"]
    if result["flow_lost"] == 0:
        assert result["flow_sends_shown"] == result["requests"]
