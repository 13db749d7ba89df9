"""When the live reader works: keep up when it can, stand back during a burst.

Decoding a tree in Python costs far more than the kernel spends making it,
so at a burst's full rate a reader that decodes as fast as it can neither
keeps up nor stays out of the way: it takes a CPU from the very load it
traces (on the 2-vCPU bench VM, a busy loop on the other vCPU alone cuts
nlload's rate by 40%). The kernel ring buffer is big enough to hold a burst,
so while one lasts the reader decodes only a small share of each tick and
catches up when the burst is over. It returns to full speed before the ring
is half full, so that standing back never costs a record. Past that, a load
beyond the reader fills the ring all the same, and the kernel drops (and
counts) what does not fit: while it drops, reading at full speed would save
only the few trees a second the reader decodes, for a CPU taken from the
load, so the reader stands back again until the kernel stops dropping.

The reader calls Pacer.budget() once per tick with how full the ring is and
whether the kernel dropped records since the last tick; the answer is how
long it may decode in that tick.
"""

TICK_S = 0.1
BURST_SHARE = 0.05    # of each tick, while a burst fills the ring
HIGH_WATER = 0.5      # of the ring: from here on, full speed whatever the rate


class Pacer:
    def __init__(self, capacity, tick_s=TICK_S, burst_share=BURST_SHARE, high_water=HIGH_WATER):
        self.capacity = capacity
        self.tick_s = tick_s
        self.burst_share = burst_share
        self.high_water = high_water
        self.in_burst = False
        self._last_used = 0

    def budget(self, used, fell_behind, dropping=False):
        """used: bytes waiting in the ring now. fell_behind: the last tick
        ended with records still waiting. dropping: the kernel dropped
        records since the last tick. Returns seconds of decoding."""
        grew = used > self._last_used
        self._last_used = used
        if dropping:
            self.in_burst = True
        elif used >= self.high_water * self.capacity:
            self.in_burst = False
        elif self.in_burst:
            # the burst is over once the ring stops filling faster than the share drains it
            self.in_burst = grew
        else:
            self.in_burst = fell_behind and grew
        return self.tick_s * self.burst_share if self.in_burst else self.tick_s
