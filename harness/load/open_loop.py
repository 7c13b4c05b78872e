"""Open-loop bookkeeping of one client process: which requests are due, who waits, how late.

wrk2's design, with one shared queue instead of a schedule per connection: requests come due at
their intended times (`arrivals`) whatever the server does; a due request takes a free
connection from the pool (`concurrency` connections) or waits, first come first served, for
the next one to free up. A request due while the client itself was stalled is sent at once
when the client gets going again (catch-up; wrk2 paces catch-up at twice the rate, which only
changes when it is sent, not what it measures). Latency is always measured from the intended
time, so time spent waiting -- for the client, for a connection, for a stalled server --
counts; the engine keeps the send-to-response time too (service time, uncorrected).

A request not answered within the deadline *of its intended time* is a hang, even if it was
never sent: it waited so long that no answer could have come in time.

Whether the client kept up is decided from counts that merge exactly across processes
(`ScheduleStats`, see `metrics.LoadResult.client_bound_schedule`):
- `intended`: measured requests that came due; `sent`: those actually sent;
- `late`: measured requests the client dispatched more than LATE_S after their intended time
  although a connection was free -- the client's own lateness (CPU, a stalled loop), as
  opposed to waiting for a busy connection (the server, or a pool too small for the rate).

Sans-I/O: no sockets, no clock reads. The engine passes `now`; tests drive it with a fake clock.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

from .arrivals import Arrivals
from .histogram import EXACT_BELOW_US, bucket_floor
from .metrics import HANG, LatencyHistogram, ScheduleStats
from .outcome import MAX_PENDING, Tally
from .schedule import MEASURED, STOP, Schedule
from .workload import Workload

LATE_S = 0.010  # a dispatch later than this, with a connection free, is the client's lateness
MAX_DUE_PER_CALL = 10_000  # catch-up is sent in batches, so the engine's clock keeps ticking

T = TypeVar("T")


class OpenLoop:
    __slots__ = (
        "_lag",
        "_lag_histogram",
        "arrival",
        "arrivals",
        "deadline",
        "intended",
        "issuing",
        "late",
        "next_due",
        "rate",
        "schedule",
        "sent",
        "tally",
        "waiting",
    )

    def __init__(self, workload: Workload, schedule: Schedule, tally: Tally) -> None:
        self.arrivals = Arrivals(workload, schedule.start)
        self.arrival = workload.arrival
        self.schedule = schedule
        self.tally = tally
        self.deadline = workload.deadline_s
        self.rate = workload.share_rate()
        self.next_due = self.arrivals.next()
        self.waiting: deque[tuple[float, bool]] = deque()  # (intended time, measured), oldest first
        self.issuing = True  # False once the schedule has no more requests to send
        self.intended = self.sent = self.late = 0
        self._lag: dict[int, int] = {}  # send lag in microseconds -> count (bulk-added later)
        self._lag_histogram = LatencyHistogram()

    def due(self, now: float, free: list[T]) -> list[tuple[T, float, bool]]:
        """Every request due by `now`, oldest first: paired with a connection popped from
        `free` (send it now), queued when none is free, or a hang if its deadline has already
        passed. Returns the (connection, intended time, measured) triples to send."""
        sends: list[tuple[T, float, bool]] = []
        for _ in range(MAX_DUE_PER_CALL):
            intended = self.next_due
            if not self.issuing or intended > now:
                break
            admitted = self.schedule.admit(intended)
            if admitted == STOP:
                self.issuing = False
                break
            self.next_due = self.arrivals.next()
            measured = admitted == MEASURED
            if measured:
                self.intended += 1
            if not free or self.waiting:  # first come, first served
                self.waiting.append((intended, measured))
                continue
            if measured and now - intended > LATE_S:
                self.late += 1
            if now - intended >= self.deadline:
                self.tally.record(HANG, measured, now, 0.0)
                continue
            self._sent(intended, measured, now)
            sends.append((free.pop(), intended, measured))
        return sends

    def next_waiting(self, now: float) -> tuple[float, bool] | None:
        """A connection has freed up: the oldest waiting request still within its deadline
        (counted as sent now), or None when nothing waits."""
        waiting = self.waiting
        for _ in range(len(waiting)):
            intended, measured = waiting.popleft()
            if now - intended >= self.deadline:
                self.tally.record(HANG, measured, now, 0.0)
                continue
            self._sent(intended, measured, now)
            return intended, measured
        return None

    def expire(self, now: float) -> None:
        """Waiting requests past the deadline of their intended time are hangs."""
        waiting = self.waiting
        for _ in range(len(waiting)):
            if now - waiting[0][0] < self.deadline:
                return
            _intended, measured = waiting.popleft()
            self.tally.record(HANG, measured, now, 0.0)

    def stop(self) -> None:
        """End early: send nothing more; waiting requests are dropped (the result is partial)."""
        self.issuing = False
        self.waiting.clear()

    @property
    def done(self) -> bool:
        """Nothing left to send (the engine still waits for requests in flight)."""
        return not self.issuing and not self.waiting

    def _sent(self, intended: float, measured: bool, now: float) -> None:
        if measured:
            self.sent += 1
            lag = self._lag
            value = int((now - intended) * 1_000_000)
            if value >= EXACT_BELOW_US:
                value = bucket_floor(value)
            lag[value] = lag.get(value, 0) + 1
            if len(lag) >= MAX_PENDING:
                self._flush_lag()

    def _flush_lag(self) -> None:
        for value, count in self._lag.items():
            self._lag_histogram.record(value, count)
        self._lag.clear()

    def stats(self) -> ScheduleStats:
        self._flush_lag()
        return ScheduleStats(self.rate, self.intended, self.sent, self.late, self._lag_histogram, self.arrival)
