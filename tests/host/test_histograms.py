"""Log2 bucket math and percentile estimates on known distributions."""

import math
import random

import pytest

from nltrace.histograms import (Histogram, bucket_bounds, interval_delta, pick_unit,
                                        slot_of)


def histogram_of(values):
    h = Histogram("k")
    for v in values:
        h.buckets[slot_of(v)] = h.buckets.get(slot_of(v), 0) + 1
    h.max_ns = max(values)
    return h


def test_buckets_tile_the_line():
    assert bucket_bounds(0) == (0, 1)
    assert bucket_bounds(12) == (4096, 8191)
    for ns in (0, 1, 2, 3, 4095, 4096, 8191, 8192, 10**9):
        low, high = bucket_bounds(slot_of(ns))
        assert low <= ns <= high


@pytest.mark.parametrize("seed, spread", [(1, "lognormal"), (2, "uniform"), (3, "bimodal")])
def test_percentiles_fall_in_the_true_bucket(seed, spread):
    rng = random.Random(seed)
    if spread == "lognormal":
        values = [int(rng.lognormvariate(9, 1.5)) for _ in range(10000)]
    elif spread == "uniform":
        values = [rng.randrange(1, 1_000_000) for _ in range(10000)]
    else:
        values = ([rng.randrange(900, 1100) for _ in range(9000)]
                  + [rng.randrange(10**6, 2 * 10**6) for _ in range(1000)])
    h = histogram_of(values)
    ordered = sorted(values)
    assert h.count == len(values)
    for p in (50, 90, 99):
        exact = ordered[math.ceil(p / 100 * len(ordered)) - 1]   # nearest rank
        low, high = bucket_bounds(slot_of(exact))
        assert low <= h.percentile(p) <= high, (p, exact, h.percentile(p))
        assert h.percentile(p) <= h.max_ns


def test_single_value_never_exceeds_the_max():
    h = histogram_of([5000] * 100)
    assert h.percentile(50) == h.percentile(99) == 5000
    assert Histogram("empty").percentile(50) is None


def test_units_and_json():
    h = histogram_of([3_000_000] * 10)
    assert pick_unit([h]) == "us"
    out = h.to_json("us")
    assert out["count"] == 10 and out["max"] == 3000.0
    assert out["buckets"] == [{"low": 2097.152, "high": 4194.303, "count": 10}]
    assert pick_unit([histogram_of([50])]) == "ns"
    assert pick_unit([histogram_of([50_000_000])]) == "ms"


def test_interval_delta_counts_only_the_interval():
    before = {("a", 3): 10, ("b", 4): 2}
    now = {("a", 3): 15, ("b", 4): 2, ("c", 1): 1}
    assert interval_delta(now, before) == {("a", 3): 5, ("c", 1): 1}
