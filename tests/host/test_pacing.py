"""The live reader's pacing (nltrace/sources/pacing.py): pure logic, driven
here by a simulated ring buffer (no kernel involved)."""

import pytest

from nltrace.sources.pacing import Pacer

CAPACITY = 1000
TICK = 0.1
SHARE = 0.05


def pacer():
    return Pacer(CAPACITY, tick_s=TICK, burst_share=SHARE, high_water=0.5)


def test_a_reader_that_keeps_up_always_reads_at_full_speed():
    p = pacer()
    for used in (0, 40, 10, 80, 30):
        assert p.budget(used, fell_behind=False) == TICK
        assert not p.in_burst


def test_falling_behind_while_the_ring_fills_is_a_burst_until_the_ring_stops_filling():
    p = pacer()
    assert p.budget(100, fell_behind=False) == TICK
    assert p.budget(200, fell_behind=True) == pytest.approx(TICK * SHARE)   # behind and growing
    assert p.budget(300, fell_behind=False) == pytest.approx(TICK * SHARE)  # still growing
    assert p.budget(290, fell_behind=False) == TICK                         # the burst is over
    assert not p.in_burst


def test_behind_but_not_growing_is_no_burst():
    p = pacer()
    p.budget(300, fell_behind=False)
    assert p.budget(250, fell_behind=True) == TICK


def test_while_the_kernel_drops_the_reader_stands_back_and_drains_once_it_stops():
    p = pacer()
    p.budget(100, fell_behind=False)
    assert p.budget(CAPACITY, fell_behind=True, dropping=True) == pytest.approx(TICK * SHARE)   # past high water
    assert p.budget(CAPACITY, fell_behind=True, dropping=True) == pytest.approx(TICK * SHARE)
    assert p.budget(CAPACITY, fell_behind=True) == TICK     # the kernel stopped dropping: drain the ring


def test_at_high_water_the_reader_goes_full_speed_even_mid_burst():
    p = pacer()
    p.budget(100, fell_behind=False)
    p.budget(300, fell_behind=True)
    assert p.in_burst
    assert p.budget(500, fell_behind=True) == TICK
    assert not p.in_burst


def simulate(produce, read_rate):
    """produce: bytes written in each tick; read_rate: bytes the reader takes
    per second of budget. Returns the ring's fill at each tick's start, the
    bytes that did not fit, and the reader's budget in each tick."""
    p = pacer()
    used, lost, behind, dropping, fills, budgets = 0, 0, False, False, [], []
    for written in produce:
        fills.append(used)
        budget = p.budget(used, behind, dropping)
        budgets.append(budget)
        can_read = read_rate * budget
        behind = used > can_read
        used = max(0, used - can_read)
        used += written
        dropping = used > CAPACITY
        if dropping:
            lost += used - CAPACITY
            used = CAPACITY
    return fills, lost, budgets


def test_a_burst_the_ring_can_hold_is_read_later_and_none_of_it_is_lost():
    # 8 ticks at 60 bytes/tick, more than the reader's 50 per full tick
    fills, lost, _ = simulate([60] * 8 + [0] * 40, read_rate=500)
    assert lost == 0
    assert max(fills) < CAPACITY
    assert fills[-1] == 0          # caught up once the burst ended


def test_a_burst_past_high_water_brings_the_reader_back_to_full_speed():
    # a long burst: standing back alone would overflow the ring
    fills, lost, _ = simulate([45] * 60 + [0] * 60, read_rate=500)
    assert lost == 0
    assert max(fills) <= CAPACITY * 0.5 + 45
    assert fills[-1] == 0


def test_a_load_beyond_the_reader_loses_what_the_ring_cannot_hold_and_leaves_it_the_cpu():
    fills, lost, budgets = simulate([80] * 100 + [0] * 100, read_rate=500)
    assert lost > 0
    # while the load lasts, the reader takes a share of the ticks, not all of them
    assert sum(budgets[:100]) < 0.5 * 100 * TICK
    assert fills[-1] == 0          # and drains the ring once the load ends
