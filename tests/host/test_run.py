"""run.drive and the stop signals: a stop that came while a trace was set up
(deferred) ends the trace as soon as it runs; one during an item waits for
the item. Signals are sent to this process for real."""

import os
import signal

from nltrace import run


def items(n):
    yield from (None if i % 2 else i for i in range(n))


def test_a_stop_while_setting_up_ends_the_trace_at_once():
    try:
        run.defer_stops()      # as open_live and open_agent do once attached
        os.kill(os.getpid(), signal.SIGTERM)   # counted, not raised
        import nltrace.exports  # noqa: F401  (what the views set up meanwhile)
        handled = []
        run.drive(items(10), handled.append, None)
        assert handled == []
        # acted on: the next trace runs
        run.drive(items(10), handled.append, None)
        assert handled == [0, 2, 4, 6, 8]
    finally:
        run.release_stop_signals()


def test_a_stop_during_an_item_lets_it_finish():
    handled = []

    def on_item(item):
        if item == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        handled.append(item)

    run.catch_stop_signals()
    try:
        run.drive(items(10), on_item, None)
    finally:
        run.release_stop_signals()
    assert handled == [0, 2]
