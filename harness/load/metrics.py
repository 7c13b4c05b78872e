"""Outcomes, latency histograms and the load result record.

Everything a load generator measures ends up here, in records that are frozen, JSON-friendly
and mergeable *exactly*: a run spread over several client processes must give the same counts
and percentiles as one process that saw every request. That is why latency lives in an
HdrHistogram (counts per value bucket, added bucket by bucket, encoded losslessly) rather than
in per-process percentiles, which cannot be combined.

Every request ends as exactly one outcome kind (`OUTCOMES`). Latency is recorded for `ok`
outcomes only: a hang has no latency (only a deadline), and an error's latency says little.

Client-side module: imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hdrh.histogram import HdrHistogram

OK = "ok"  # complete 2xx response within the deadline
HANG = "hang"  # no complete response within the deadline (a connect that never completes too)
REFUSED = "refused"  # the connection could not be made (ECONNREFUSED and kin)
RESET = "reset"  # ECONNRESET / EPIPE: the server aborted the connection
CLOSED = "closed"  # the server closed before a full response
MALFORMED = "malformed"  # unparseable status line, headers or length
HTTP_ERROR = "http_error"  # complete response with a non-2xx status

OUTCOMES = (OK, HANG, REFUSED, RESET, CLOSED, MALFORMED, HTTP_ERROR)

# Histogram range, in microseconds: 1 us .. 60 s with 3 significant digits (0.1% error).
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def zero_counts() -> dict[str, int]:
    """A count for every outcome kind, all zero, in the canonical order."""
    return dict.fromkeys(OUTCOMES, 0)


class LatencyHistogram:
    """A thin wrapper around HdrHistogram(1 us, 60 s, 3 digits), values in microseconds.

    Values outside the range are clamped rather than dropped, so that `total_count` always
    equals the number of `record` calls (the engines cap latency at the deadline anyway).
    """

    __slots__ = ("_hdr",)

    def __init__(self) -> None:
        self._hdr = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    def record(self, value_us: int, count: int = 1) -> None:
        if value_us < LOWEST_US:
            value_us = LOWEST_US
        elif value_us > HIGHEST_US:
            value_us = HIGHEST_US
        self._hdr.record_value(value_us, count)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add `other`'s counts into this histogram (exact); returns self for chaining."""
        self._hdr.add(other._hdr)
        return self

    @property
    def total_count(self) -> int:
        return int(self._hdr.get_total_count())

    def value_at_percentile(self, percentile: float) -> int:
        return int(self._hdr.get_value_at_percentile(percentile))

    def encode(self) -> str:
        """Compressed, base64 text (the standard HdrHistogram encoding); lossless."""
        encoded: bytes = self._hdr.encode()
        return encoded.decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        histogram = cls()
        if text:
            histogram._hdr.decode_and_add(text.encode("ascii"))
        return histogram

    def summary(self) -> dict[str, int]:
        """p50, p90, p99, p999 and max in microseconds; all zero when nothing was recorded.

        Values are HdrHistogram's "highest equivalent value" of the bucket, so they are exact to
        3 significant digits and identical however the histogram was assembled.
        """
        if self.total_count == 0:
            return {name: 0 for name, _ in PERCENTILES} | {"max": 0}
        result = {name: self.value_at_percentile(pct) for name, pct in PERCENTILES}
        result["max"] = int(self._hdr.get_max_value())
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return bool(self._hdr.equals(other._hdr))

    def __repr__(self) -> str:
        return "LatencyHistogram(count=%d, %s)" % (self.total_count, self.summary())


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured. Derived fields are computed by `build`, never by hand.

    - `counts`: every outcome kind, zeros included, for requests started during measurement.
    - `elapsed_s`: measurement wall time (the window in which measured requests were started;
      for a `requests=N` run, until the last of them finished).
    - `histogram`: encoded LatencyHistogram of `ok` latencies; `latency_us` its summary.
    - `client_cpu_util`: max over client processes of cpu_s / elapsed_s (1.0 = one core busy);
      near 1.0 means the client, not the server, may be the bottleneck.
    - `loop`: the event loop or model that drove the requests ("uvloop", "asyncio", "threads").
    - `error_detail`: errno names (and similar) behind refused/reset outcomes, for diagnosis:
      e.g. EADDRNOTAVAIL means the *client* ran out of ephemeral ports.
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

    @property
    def total(self) -> int:
        return sum(self.counts.values())

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
    ) -> LoadResult:
        """Assemble a result from raw measurements, computing every derived field."""
        full = zero_counts()
        for kind, count in counts.items():
            if kind not in full:
                raise ValueError("unknown outcome kind %r" % (kind,))
            full[kind] = int(count)
        total = sum(full.values())
        if client_cpu_util is None:
            client_cpu_util = client_cpu_s / elapsed_s if elapsed_s > 0 else 0.0
        return cls(
            counts=full,
            elapsed_s=float(elapsed_s),
            histogram=histogram.encode(),
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
        )

    def latency_histogram(self) -> LatencyHistogram:
        return LatencyHistogram.decode(self.histogram)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, numbers and strings only: `json.dumps` takes it as is."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadResult:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError("unknown LoadResult fields: %s" % ", ".join(sorted(unknown)))
        values = dict(data)
        values["counts"] = zero_counts() | {k: int(v) for k, v in values.get("counts", {}).items()}
        values["latency_us"] = {k: int(v) for k, v in values.get("latency_us", {}).items()}
        values["error_detail"] = {k: int(v) for k, v in values.get("error_detail", {}).items()}
        return cls(**values)

    @staticmethod
    def merge(results: Sequence[LoadResult]) -> LoadResult:
        return merge(results)


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """Combine per-process results exactly: counts summed, histograms added bucket by bucket.

    The processes measured the same, aligned window, so `elapsed_s` is the longest of them;
    CPU seconds add up, and utilisation is the busiest process's (a saturated client process
    is the fact worth flagging, and averaging would hide it).
    """
    if not results:
        raise ValueError("merge() needs at least one result")
    counts = zero_counts()
    detail: dict[str, int] = {}
    histogram = LatencyHistogram()
    for result in results:
        for kind, count in result.counts.items():
            counts[kind] += count
        for name, count in result.error_detail.items():
            detail[name] = detail.get(name, 0) + count
        histogram.merge(result.latency_histogram())
    first = results[0]
    return LoadResult.build(
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
    )


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
    "merge",
    "zero_counts",
]
