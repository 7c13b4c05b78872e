"""Outcome kinds and the latency histogram: the units every measurement is made of.

Latency lives in an HdrHistogram (counts per value bucket, added bucket by bucket, encoded
losslessly) rather than in per-process percentiles, because percentiles cannot be combined
and a run spread over several client processes must give the same percentiles as one process
that saw every request.

Every request ends as exactly one outcome kind (`OUTCOMES`). Latency is recorded for `ok`
outcomes only: a hang has no latency (only a deadline), and an error's latency says little.

Client-side module: imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

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


EXACT_BELOW_US = 2048  # with 3 significant digits, values below this have a bucket each
_SUB_BUCKET_BITS = 11  # log2(EXACT_BELOW_US)


def bucket_floor(value_us: int) -> int:
    """The lowest value of `value_us`'s histogram bucket: recording it instead is the same
    record (same bucket, same percentiles, same max), and it lets a value -> count dict hold
    one key per bucket instead of one per microsecond (a latency of seconds has 256 us buckets)."""
    shift = value_us.bit_length() - _SUB_BUCKET_BITS
    return value_us >> shift << shift if shift > 0 else value_us


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

    def mean_us(self) -> float:
        """The mean of the recorded values (bucket midpoints: exact to 0.1 %); 0 when empty."""
        return float(self._hdr.get_mean_value()) if self.total_count else 0.0

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
        values = self._hdr.get_percentile_to_value_dict([pct for _, pct in PERCENTILES])  # one pass
        result = {name: int(values[pct]) for name, pct in PERCENTILES}
        result["max"] = int(self._hdr.get_max_value())
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return bool(self._hdr.equals(other._hdr))

    def __repr__(self) -> str:
        return "LatencyHistogram(count=%d, %s)" % (self.total_count, self.summary())
