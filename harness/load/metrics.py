"""The load result record: what a run measured, and how per-process results merge.

Everything a load generator measures ends up here, in a record that is frozen, JSON-friendly
and mergeable *exactly*: a run spread over several client processes must give the same counts,
percentiles and per-second series as one process that saw every request. So every percentile
here is derived from an HdrHistogram carried along in encoded form (`histogram.py`), never
stored alone. The outcome kinds and the histogram are re-exported from here for callers that
know this module only.

Client-side module: imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .histogram import (
    CLOSED,
    HANG,
    HTTP_ERROR,
    MALFORMED,
    OK,
    OUTCOMES,
    REFUSED,
    RESET,
    LatencyHistogram,
    zero_counts,
)
from .timeline import merge_books

INTERVAL_S = 1.0  # the time series' resolution, seconds

# Open loop: when a run is behind its schedule, and when that is the client's fault.
BEHIND_FRACTION = 0.99  # sent < 99 % of the requests that came due
LATE_FRACTION = 0.01  # >= 1 % of due requests dispatched late with a connection free
CLIENT_SATURATED = 0.9  # or a client process used >= 0.9 of a core


@dataclass(frozen=True)
class ScheduleStats:
    """How an open-loop process kept to its schedule (see open_loop.py), as `build` takes it."""

    intended_rate_rps: float  # this process's share of the rate
    intended: int  # measured requests that came due
    sent: int  # ...and were sent
    late: int  # ...dispatched > LATE_S late by the client with a connection free
    lag: LatencyHistogram  # send time - intended time of measured sent requests, microseconds
    arrival: str  # "uniform" | "poisson"


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured. Derived fields are computed by `build`, never by hand.

    - `counts`: every outcome kind, zeros included, for requests started during measurement
      (open loop: whose *intended* start fell in the measurement window).
    - `elapsed_s`: measurement wall time (the window in which measured requests were started;
      for a `requests=N` run, until the last of them finished).
    - `histogram`: encoded LatencyHistogram of `ok` latencies, measured from the intended start
      (closed loop: the send; open loop: the schedule's time, so waiting counts); `latency_us`
      its summary. `service_histogram`/`service_latency_us`: the same requests measured from
      the actual send (uncorrected; identical to the main one in closed loop).
    - `client_cpu_util`: max over client processes of cpu_s / elapsed_s (1.0 = one core busy);
      near 1.0 means the client, not the server, may be the bottleneck.
    - `loop`: the event loop or model that drove the requests ("uvloop", "asyncio", "threads").
    - `error_detail`: errno names (and similar) behind refused/reset outcomes, for diagnosis:
      e.g. EADDRNOTAVAIL means the *client* ran out of ephemeral ports.
    - `load_model`: "closed" or "open"; `arrival`: "uniform"/"poisson" (open loop), else "".
    - `intended_rate_rps`: the rate asked for (open loop, or the pace of a paced closed loop;
      None in a plain closed loop);
      `achieved_rate_rps`: measured requests actually sent per second of measurement.
    - `requests_intended`/`requests_sent`/`late_sends`: measured requests that came due, were
      sent, and were dispatched late by the client with a connection free (open_loop.py).
    - `schedule_lag_us` (+ `schedule_lag_histogram`): how late measured requests were sent
      versus intended, p50/p99/max (open loop only; {} and "" otherwise).
    - `intervals`: one dict per second from the start of measurement, `{"t_s", "counts",
      "p50_us", "p99_us", "max_us"}`: outcomes of measured requests by the second in which
      they *ended* (so a stall shows as seconds without `ok`), with the percentiles of that
      second's corrected `ok` latencies. Seconds at `t_s >= elapsed_s` hold requests started in
      the window that ended after it. `interval_histograms` are the encoded histograms behind
      them; added up they are `histogram` exactly, and they merge exactly across processes.
    """

    counts: dict[str, int]
    elapsed_s: float
    histogram: str
    latency_us: dict[str, int]
    throughput_rps: float
    hang_rate: float
    error_rate: float
    client_cpu_s: float
    client_cpu_util: float
    partial: bool
    engine: str
    client_procs: int
    loop: str = ""
    error_detail: dict[str, int] = field(default_factory=dict)
    load_model: str = "closed"
    arrival: str = ""
    intended_rate_rps: float | None = None
    achieved_rate_rps: float | None = None
    requests_intended: int = 0
    requests_sent: int = 0
    late_sends: int = 0
    service_histogram: str = ""
    service_latency_us: dict[str, int] = field(default_factory=dict)
    schedule_lag_us: dict[str, int] = field(default_factory=dict)
    schedule_lag_histogram: str = ""
    intervals: list[dict[str, Any]] = field(default_factory=list)
    interval_histograms: list[str] = field(default_factory=list)
    # The first hung or failed requests' milestones, and hung requests by the last milestone
    # reached (harness.load.timeline); empty where the engine records none.
    timelines: list[dict[str, Any]] = field(default_factory=list)
    hang_milestones: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def behind_schedule(self) -> bool:
        """Open loop: fewer than 99 % of the measured requests that came due were sent."""
        return self.load_model == "open" and self.requests_sent < BEHIND_FRACTION * self.requests_intended

    @property
    def client_bound_schedule(self) -> bool:
        """Open loop: behind schedule *because of the client*: at least 1 % of the due requests
        were dispatched late although a connection was free (a slow or stalled client loop), or
        a client process was CPU-saturated (>= 0.9 of a core). Behind schedule otherwise means
        every connection was busy: the server is slower than the rate (or the pool is too small
        for rate x service time), and the row should say the achieved rate, not `client-bound`."""
        if not self.behind_schedule:
            return False
        late = self.late_sends >= LATE_FRACTION * self.requests_intended
        return late or self.client_cpu_util >= CLIENT_SATURATED

    @classmethod
    def build(
        cls,
        counts: Mapping[str, int],
        histogram: LatencyHistogram,
        elapsed_s: float,
        client_cpu_s: float,
        *,
        engine: str,
        client_procs: int = 1,
        partial: bool = False,
        loop: str = "",
        error_detail: Mapping[str, int] | None = None,
        client_cpu_util: float | None = None,
        service: LatencyHistogram | None = None,
        intervals: Sequence[tuple[Mapping[str, int], LatencyHistogram]] | None = (),
        schedule: ScheduleStats | None = None,
        paced_rps: float | None = None,
    ) -> LoadResult:
        """Assemble a result from raw measurements, computing every derived field.

        `service` defaults to `histogram` (closed loop); `intervals` are (counts, corrected ok
        histogram) per second of measurement (None: no series is known, e.g. merging records
        from before the series existed); `schedule` is given for an open-loop run, `paced_rps`
        for a paced closed loop (the rate it was paced at: its intended rate)."""
        full = _full_counts(counts)
        total = sum(full.values())
        if client_cpu_util is None:
            client_cpu_util = client_cpu_s / elapsed_s if elapsed_s > 0 else 0.0
        encoded = histogram.encode()
        series = _series(intervals, elapsed_s) if intervals is not None else []
        sent = schedule.sent if schedule is not None else total
        return cls(
            counts=full,
            elapsed_s=float(elapsed_s),
            histogram=encoded,
            latency_us=histogram.summary(),
            throughput_rps=full[OK] / elapsed_s if elapsed_s > 0 else 0.0,
            hang_rate=full[HANG] / total if total else 0.0,
            error_rate=(total - full[OK] - full[HANG]) / total if total else 0.0,
            client_cpu_s=float(client_cpu_s),
            client_cpu_util=float(client_cpu_util),
            partial=bool(partial),
            engine=engine,
            client_procs=int(client_procs),
            loop=loop,
            error_detail=dict(sorted((error_detail or {}).items())),
            load_model="open" if schedule is not None else "closed",
            arrival=schedule.arrival if schedule is not None else "",
            intended_rate_rps=float(schedule.intended_rate_rps) if schedule is not None else paced_rps,
            achieved_rate_rps=sent / elapsed_s if elapsed_s > 0 else 0.0,
            requests_intended=schedule.intended if schedule is not None else total,
            requests_sent=sent,
            late_sends=schedule.late if schedule is not None else 0,
            service_histogram=service.encode() if service is not None else encoded,
            service_latency_us=(service if service is not None else histogram).summary(),
            schedule_lag_us=_lag_summary(schedule.lag) if schedule is not None else {},
            schedule_lag_histogram=schedule.lag.encode() if schedule is not None else "",
            intervals=[_interval(i, c, h) for i, (c, h) in enumerate(series)],
            interval_histograms=[h.encode() for _, h in series],
        )

    def latency_histogram(self) -> LatencyHistogram:
        return LatencyHistogram.decode(self.histogram)

    def service_latency_histogram(self) -> LatencyHistogram:
        return LatencyHistogram.decode(self.service_histogram)

    def interval_series(self) -> list[tuple[dict[str, int], LatencyHistogram]]:
        """(counts, corrected ok histogram) per second, decoded: what `merge` adds up."""
        return [
            (dict(i["counts"]), LatencyHistogram.decode(h))
            for i, h in zip(self.intervals, self.interval_histograms, strict=False)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, numbers and strings only: `json.dumps` takes it as is."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadResult:
        """The inverse of `to_dict`; a dict from before open loop and intervals (no such
        fields) reads as the closed-loop run it was: service time = latency, no intervals."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError("unknown LoadResult fields: %s" % ", ".join(sorted(unknown)))
        values = dict(data)
        values["counts"] = zero_counts() | {k: int(v) for k, v in values.get("counts", {}).items()}
        for name in ("latency_us", "error_detail", "service_latency_us", "schedule_lag_us"):
            values[name] = {k: int(v) for k, v in values.get(name, {}).items()}
        if "service_histogram" not in data:
            values["service_histogram"] = values.get("histogram", "")
            values["service_latency_us"] = dict(values["latency_us"])
        values["intervals"] = [dict(i, counts=zero_counts() | dict(i["counts"])) for i in values.get("intervals", [])]
        values["interval_histograms"] = list(values.get("interval_histograms", []))
        return cls(**values)

    @staticmethod
    def merge(results: Sequence[LoadResult]) -> LoadResult:
        return merge(results)


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """Combine per-process results exactly: counts summed, histograms added bucket by bucket,
    intervals second by second (the processes share one measurement start).

    The processes measured the same, aligned window, so `elapsed_s` is the longest of them;
    CPU seconds add up, and utilisation is the busiest process's (a saturated client process
    is the fact worth flagging, and averaging would hide it). Rates and schedule counts add up.
    """
    if not results:
        raise ValueError("merge() needs at least one result")
    counts = zero_counts()
    detail: dict[str, int] = {}
    histogram, service, lag = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    series: list[tuple[dict[str, int], LatencyHistogram]] = []
    for result in results:
        for kind, count in result.counts.items():
            counts[kind] += count
        for name, count in result.error_detail.items():
            detail[name] = detail.get(name, 0) + count
        histogram.merge(result.latency_histogram())
        service.merge(result.service_latency_histogram())
        lag.merge(LatencyHistogram.decode(result.schedule_lag_histogram))
        for index, (interval_counts, interval_histogram) in enumerate(result.interval_series()):
            if index == len(series):
                series.append((zero_counts(), LatencyHistogram()))
            for kind, count in interval_counts.items():
                series[index][0][kind] += count
            series[index][1].merge(interval_histogram)
    first = results[0]
    if any(r.total and not r.interval_histograms for r in results):
        series_or_none: list[tuple[dict[str, int], LatencyHistogram]] | None = None  # a record without one
    else:
        series_or_none = series
    schedule = None
    if first.load_model == "open":
        schedule = ScheduleStats(
            intended_rate_rps=sum(r.intended_rate_rps or 0.0 for r in results),
            intended=sum(r.requests_intended for r in results),
            sent=sum(r.requests_sent for r in results),
            late=sum(r.late_sends for r in results),
            lag=lag,
            arrival=first.arrival,
        )
    # Each process kept its first N timelines: all of them are kept (at most N per process).
    parts = [(r.timelines, r.hang_milestones) for r in results]
    timelines, milestones = merge_books(parts, sum(len(r.timelines) for r in results))
    merged = LoadResult.build(
        counts,
        histogram,
        max(r.elapsed_s for r in results),
        sum(r.client_cpu_s for r in results),
        engine=first.engine,
        client_procs=sum(r.client_procs for r in results),
        partial=any(r.partial for r in results),
        loop=first.loop,
        error_detail=detail,
        client_cpu_util=max(r.client_cpu_util for r in results),
        service=service,
        intervals=series_or_none,
        schedule=schedule,
        paced_rps=None if schedule or not first.intended_rate_rps else sum(r.intended_rate_rps or 0.0 for r in results),
    )
    return replace(merged, timelines=timelines, hang_milestones=milestones)


def _full_counts(counts: Mapping[str, int]) -> dict[str, int]:
    full = zero_counts()
    for kind, count in counts.items():
        if kind not in full:
            raise ValueError("unknown outcome kind %r" % (kind,))
        full[kind] = int(count)
    return full


def _series(
    intervals: Sequence[tuple[Mapping[str, int], LatencyHistogram]], elapsed_s: float
) -> list[tuple[dict[str, int], LatencyHistogram]]:
    """One entry per second of measurement at least (seconds nothing ended in are zeros)."""
    series = [(_full_counts(c), h) for c, h in intervals]
    for _ in range(len(series), math.ceil(elapsed_s - 1e-9)):
        series.append((zero_counts(), LatencyHistogram()))
    return series


def _interval(index: int, counts: dict[str, int], histogram: LatencyHistogram) -> dict[str, Any]:
    summary = histogram.summary()
    return {
        "t_s": float(index) * INTERVAL_S,
        "counts": counts,
        "p50_us": summary["p50"],
        "p99_us": summary["p99"],
        "max_us": summary["max"],
    }


def _lag_summary(histogram: LatencyHistogram) -> dict[str, int]:
    summary = histogram.summary()
    return {"p50": summary["p50"], "p99": summary["p99"], "max": summary["max"]}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "CLOSED",
    "HANG",
    "HTTP_ERROR",
    "MALFORMED",
    "OK",
    "OUTCOMES",
    "REFUSED",
    "RESET",
    "LatencyHistogram",
    "LoadResult",
    "ScheduleStats",
    "merge",
    "zero_counts",
]
