"""The run's clock: when requests may start, which ones count, and progress snapshots.

A request is attributed to the phase in which it *started*: warm-up requests are discarded
even if they end during measurement, and measured requests still in flight when the window
closes are waited for (at most the deadline), so a hang that began in the window is counted.
For a `requests=N` run the window holds exactly N measured starts.

Both engines ask `admit(now)` before each request, so the phase logic exists once. The class
holds no lock: the threads engine serialises calls itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .workload import Workload

WARMUP = "warmup"
MEASURE = "measure"

STOP = 0  # admit(): issue no more requests
WARM = 1  # admit(): a warm-up request (outcome discarded)
MEASURED = 2  # admit(): a measured request


@dataclass(frozen=True)
class Progress:
    """A snapshot for the orchestrator, about once a second.

    `elapsed_s` is the time spent in the current phase; `counts` are the outcomes of requests
    started in the current phase so far (every kind, zeros included).
    """

    phase: str
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)
    # Age of the oldest request in flight, where the engine tracks it (None: unknown or none):
    # the run captures while a request is overdue, before it is declared hung.
    oldest_in_flight_s: float | None = None


class Schedule:
    def __init__(self, workload: Workload, start: float) -> None:
        self.start = start
        self.measure_start = start + workload.warmup_s
        duration = workload.duration_s
        self.measure_end = self.measure_start + duration if duration is not None else math.inf
        self.tickets: int | None = workload.requests
        self.stopped_at: float | None = None
        # Until this instant a request starting at or after measure_start is admitted as measured
        # without asking `admit` (a duration window, not stopped): the engine's hot path
        # (slots.py) compares against it instead of making a call per request.
        self.open_until = self.measure_end if self.tickets is None else -math.inf

    def admit(self, now: float) -> int:
        if self.stopped_at is not None:
            return STOP
        if now < self.measure_start:
            return WARM
        if self.tickets is None:
            return MEASURED if now < self.measure_end else STOP
        if self.tickets <= 0:
            return STOP
        self.tickets -= 1
        return MEASURED

    def stop(self, now: float) -> None:
        """End early (the caller's stop event): no more requests; the result is partial."""
        if self.stopped_at is None:
            self.stopped_at = now
        self.open_until = -math.inf

    def phase(self, now: float) -> str:
        return WARMUP if now < self.measure_start else MEASURE

    def phase_elapsed(self, now: float) -> float:
        return now - self.start if now < self.measure_start else now - self.measure_start

    def issuing_over(self, now: float) -> bool:
        """True once no request will be admitted any more."""
        if self.stopped_at is not None:
            return True
        if self.tickets is None:
            return now >= self.measure_end
        return now >= self.measure_start and self.tickets <= 0

    def elapsed(self, last_end: float) -> float:
        """Measurement wall time: the window, cut short by a stop; for `requests=N`, until the
        last measured request ended."""
        if self.tickets is None:
            end = self.measure_end if self.stopped_at is None else min(self.measure_end, self.stopped_at)
        else:
            end = last_end if self.stopped_at is None else self.stopped_at
        return max(0.0, end - self.measure_start)


class CpuWindow:
    """CPU time this process spends during the measurement window (time.process_time)."""

    def __init__(self) -> None:
        self._cpu0 = self._wall0 = 0.0
        self.cpu_s = self.wall_s = 0.0
        self.started = self.ended = False

    def begin(self) -> None:
        if not self.started:
            self.started = True
            self._cpu0, self._wall0 = time.process_time(), time.monotonic()

    def end(self) -> None:
        if self.started and not self.ended:
            self.ended = True
            self.cpu_s = time.process_time() - self._cpu0
            self.wall_s = time.monotonic() - self._wall0
