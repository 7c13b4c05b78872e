"""Intended start times of an open-loop run: the schedule that requests are sent on.

The times are computed, never accumulated from "now": a uniform schedule is start + i/rate for
the i-th request of the whole run (this process takes every `streams`-th one, offset by its
`stream`, so several client processes interleave into one even schedule), and a Poisson
schedule is a sum of seeded exponential gaps at this process's share of the rate (independent
Poisson streams add up to a Poisson stream at the total rate). Nothing here reads a clock:
being late is the sender's business, never the schedule's, which is what makes the latency
measured from these times free of coordinated omission.
"""

from __future__ import annotations

import random

from .workload import Workload

UNIFORM = "uniform"
POISSON = "poisson"


class Arrivals:
    """Successive intended start times (time.monotonic() seconds) of one process's share."""

    __slots__ = ("_gap_rate", "_index", "_rate", "_rng", "_start", "_step", "_t")

    def __init__(self, workload: Workload, start: float) -> None:
        if workload.rate is None:
            raise ValueError("arrivals need an open-loop workload (a rate)")
        self._start = start
        self._rate = float(workload.rate)
        self._index = workload.stream  # uniform: the next index in the whole run's schedule
        self._step = workload.streams
        self._rng: random.Random | None = None
        self._t = start
        self._gap_rate = workload.share_rate()
        if workload.arrival == POISSON:
            # A str seed is hashed deterministically (unlike hash()), so runs repeat exactly.
            self._rng = random.Random("hangbench:%d:%d" % (workload.seed, workload.stream))

    def next(self) -> float:
        rng = self._rng
        if rng is None:
            t = self._start + self._index / self._rate
            self._index += self._step
            return t
        self._t += rng.expovariate(self._gap_rate)
        return self._t

    def take(self, count: int) -> list[float]:
        """The next `count` times (for tests and plans)."""
        return [self.next() for _ in range(count)]
