"""How a request ends, and how the endings of one client process are counted.

`classify_error` maps what the socket layer raised to one outcome kind (plus the errno name,
kept as diagnosis: the kinds say what the server did, the errno says how the client saw it).
`Tally` counts the endings of one process, keeping warm-up outcomes apart from measured ones
and latency for measured `ok` outcomes only. Both engines use these, so an `ok` or a `hang`
means the same whatever engine produced it.

Latencies are first counted in a plain dict (value -> count) and added to the HdrHistogram in
bulk: a dict increment costs a tenth of a pure-Python HdrHistogram record, and the result is
identical.

The tally is not thread-safe on its own: the asyncio engine calls it from its loop only; the
threads engine holds a lock around it.
"""

from __future__ import annotations

import errno
import socket
import time

from .metrics import (
    HANG,
    OK,
    REFUSED,
    RESET,
    LatencyHistogram,
    LoadResult,
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


class Tally:
    """Counts of one process: warm-up outcomes apart, measured ones with their latencies."""

    __slots__ = ("_histogram", "_pending", "counts", "detail", "last_end", "warmup")

    def __init__(self) -> None:
        self.counts: dict[str, int] = zero_counts()
        self.warmup: dict[str, int] = zero_counts()
        self._histogram = LatencyHistogram()
        self._pending: dict[int, int] = {}  # latency in us -> count, not yet in the histogram
        self.detail: dict[str, int] = {}
        self.last_end = 0.0  # monotonic time the last measured request ended

    def record(self, kind: str, measured: bool, latency_s: float, detail: str | None = None) -> None:
        if not measured:
            self.warmup[kind] += 1
            return
        self.counts[kind] += 1
        if kind == OK:
            pending = self._pending
            value = int(latency_s * 1_000_000)
            pending[value] = pending.get(value, 0) + 1
            if len(pending) >= MAX_PENDING:
                self._flush()
        if detail is not None and kind != HANG:
            self.detail[detail] = self.detail.get(detail, 0) + 1
        self.last_end = time.monotonic()

    @property
    def histogram(self) -> LatencyHistogram:
        self._flush()
        return self._histogram

    def _flush(self) -> None:
        for value, count in self._pending.items():
            self._histogram.record(value, count)
        self._pending.clear()

    def result(
        self, elapsed_s: float, cpu_s: float, cpu_wall_s: float, *, engine: str, loop: str, partial: bool
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
        )
