"""How a request ends, and how the endings of one client process are counted.

`classify_error` maps what the socket layer raised to one outcome kind (plus the errno name,
kept as diagnosis: the kinds say what the server did, the errno says how the client saw it).
`Tally` counts the endings of one process, keeping warm-up outcomes apart from measured ones,
measured ones per second in which they ended (the time series), and latency for measured `ok`
outcomes only. The seconds are the unit of storage: the total histogram is their sum, so the
series and the totals cannot disagree. Both engines use these, so an `ok` or a `hang`
means the same whatever engine produced it.

Latencies are first counted in a plain dict (value -> count) and added to the HdrHistogram in
bulk: a dict increment costs a tenth of a pure-Python HdrHistogram record, and the result is
identical. The caller passes the end time it already read, so recording reads no clock.

The tally is not thread-safe on its own: the asyncio engine calls it from its loop only; the
threads engine holds a lock around it.
"""

from __future__ import annotations

import errno
import math
import socket

from .histogram import EXACT_BELOW_US, bucket_floor
from .metrics import (
    HANG,
    INTERVAL_S,
    OK,
    REFUSED,
    RESET,
    LatencyHistogram,
    LoadResult,
    ScheduleStats,
    zero_counts,
)

MAX_PENDING = 20_000  # distinct latency values held before a bulk add to the histogram
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def classify_error(error: BaseException, connecting: bool) -> tuple[str, str]:
    """(outcome kind, detail) for an exception raised while connecting or exchanging data.

    A failure to connect that is neither a refusal nor a timeout (EADDRNOTAVAIL: the client ran
    out of ephemeral ports; EMFILE: out of descriptors) still counts as `refused` -- no
    connection was made -- and its errno in the detail tells the client's fault apart.
    """
    if isinstance(error, (TimeoutError, socket.timeout)):
        return HANG, "timeout"
    if isinstance(error, ConnectionRefusedError):
        return REFUSED, "ECONNREFUSED"
    number = getattr(error, "errno", None)
    name = errno.errorcode.get(number, type(error).__name__) if isinstance(number, int) else type(error).__name__
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) or number in _RESET_ERRNOS:
        return RESET, name
    return (REFUSED if connecting else RESET), name


class _Interval:
    """One second of measurement: outcomes that ended in it, and their ok latencies."""

    __slots__ = ("counts", "histogram", "pending")

    def __init__(self) -> None:
        self.counts = zero_counts()
        self.histogram = LatencyHistogram()
        self.pending: dict[int, int] = {}

    def flush(self) -> None:
        for value, count in self.pending.items():
            self.histogram.record(value, count)
        self.pending.clear()


class Tally:
    """Counts of one process: warm-up outcomes apart, measured ones per second of measurement
    with their latencies (corrected, and the service time when it differs: open loop)."""

    __slots__ = (
        "_counts",
        "_current",
        "_intervals",
        "_pending",
        "_service",
        "_service_pending",
        "_since",
        "_until",
        "detail",
        "last_end",
        "origin",
        "warmup",
    )

    def __init__(self, origin: float = 0.0, service: bool = False) -> None:
        self.origin = origin  # monotonic start of measurement: interval 0 begins here
        self.warmup: dict[str, int] = zero_counts()
        self.detail: dict[str, int] = {}
        self.last_end = 0.0  # monotonic time the last measured request ended
        self._intervals: dict[int, _Interval] = {}
        # The current second, unpacked for the hot path: [_since, _until) and its dicts.
        self._current = _Interval()  # replaced at the first measured outcome
        self._since = self._until = 0.0
        self._counts, self._pending = self._current.counts, self._current.pending
        self._service: LatencyHistogram | None = LatencyHistogram() if service else None
        self._service_pending: dict[int, int] = {}

    @property
    def counts(self) -> dict[str, int]:
        """Measured outcomes so far, every kind (the seconds added up)."""
        total = zero_counts()
        for interval in self._intervals.values():
            for kind, count in interval.counts.items():
                total[kind] += count
        return total

    def record(
        self, kind: str, measured: bool, now: float, latency_s: float, service_s: float = 0.0, detail: str | None = None
    ) -> None:
        """One request ended at monotonic time `now`, `latency_s` after its intended start
        (`service_s` after its send: only kept when the tally was made with service=True)."""
        if not measured:
            self.warmup[kind] += 1
            return
        if kind == OK:
            self.record_ok(now, latency_s, service_s)
            return
        if not self._since <= now < self._until:
            self._enter(now)
        self._counts[kind] += 1
        if detail is not None and kind != HANG:
            self.detail[detail] = self.detail.get(detail, 0) + 1
        self.last_end = now

    def record_ok(self, now: float, latency_s: float, service_s: float = 0.0) -> None:
        """A measured `ok` (`record`'s most common case, and all of the engine's hot path)."""
        if not self._since <= now < self._until:
            self._enter(now)
        self._counts[OK] += 1
        pending = self._pending
        value = int(latency_s * 1_000_000)
        if value >= EXACT_BELOW_US:  # one key per histogram bucket, not per microsecond
            value = bucket_floor(value)
        pending[value] = pending.get(value, 0) + 1
        if len(pending) >= MAX_PENDING:
            self._current.flush()
        if self._service is not None:
            self.record_service(service_s)
        self.last_end = now

    def _enter(self, now: float) -> None:
        """Outcomes now end in another second: flush the current one, switch to that one."""
        self._current.flush()
        index = max(int((now - self.origin) / INTERVAL_S), 0)
        interval = self._intervals.get(index)
        if interval is None:
            interval = self._intervals[index] = _Interval()
        self._current, self._counts, self._pending = interval, interval.counts, interval.pending
        self._since = self.origin + index * INTERVAL_S if index > 0 else -math.inf
        self._until = self.origin + (index + 1) * INTERVAL_S

    def record_service(self, service_s: float) -> None:
        spending = self._service_pending
        value = int(service_s * 1_000_000)
        if value >= EXACT_BELOW_US:
            value = bucket_floor(value)
        spending[value] = spending.get(value, 0) + 1
        if len(spending) >= MAX_PENDING:
            self._flush_service()

    def _flush_service(self) -> None:
        if self._service is not None:
            for value, count in self._service_pending.items():
                self._service.record(value, count)
        self._service_pending.clear()

    def series(self) -> list[tuple[dict[str, int], LatencyHistogram]]:
        """(counts, ok latency histogram) for every second from 0 to the last one with an outcome."""
        self._current.flush()
        last = max(self._intervals, default=-1)
        empty = _Interval
        return [
            (dict(interval.counts), interval.histogram)
            for interval in (self._intervals.get(i) or empty() for i in range(last + 1))
        ]

    @property
    def histogram(self) -> LatencyHistogram:
        """All measured ok latencies: the seconds' histograms added up (exactly)."""
        total = LatencyHistogram()
        for _counts, histogram in self.series():
            total.merge(histogram)
        return total

    def service_histogram(self) -> LatencyHistogram | None:
        self._flush_service()
        return self._service

    def result(
        self,
        elapsed_s: float,
        cpu_s: float,
        cpu_wall_s: float,
        *,
        engine: str,
        loop: str,
        partial: bool,
        schedule: ScheduleStats | None = None,
        paced_rps: float | None = None,
    ) -> LoadResult:
        util = cpu_s / cpu_wall_s if cpu_wall_s > 0 else 0.0
        return LoadResult.build(
            self.counts,
            self.histogram,
            elapsed_s,
            cpu_s,
            engine=engine,
            partial=partial,
            loop=loop,
            error_detail=self.detail,
            client_cpu_util=util,
            service=self.service_histogram(),
            intervals=self.series(),
            schedule=schedule,
            paced_rps=paced_rps,
        )
