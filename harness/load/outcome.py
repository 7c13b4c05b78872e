"""How a request ends, and how the endings of one client process are counted.

`classify_error` maps what the socket layer raised to one outcome kind (plus the errno name,
kept as diagnosis: the kinds say what the server did, the errno says how the client saw it).
`Tally` counts the endings of one process, keeping warm-up outcomes apart from measured ones
and latency for measured `ok` outcomes only. Both engines use these, so an `ok` or a `hang`
means the same whatever engine produced it.

The tally is not thread-safe on its own: the asyncio engine calls it from its loop only; the
threads engine holds a lock around it.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Dict, Tuple

from ..metrics import HANG, OK, REFUSED, RESET, LatencyHistogram, LoadResult, zero_counts

_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def classify_error(error: BaseException, connecting: bool) -> Tuple[str, str]:
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

    __slots__ = ("counts", "warmup", "histogram", "detail", "last_end")

    def __init__(self) -> None:
        self.counts: Dict[str, int] = zero_counts()
        self.warmup: Dict[str, int] = zero_counts()
        self.histogram = LatencyHistogram()
        self.detail: Dict[str, int] = {}
        self.last_end = 0.0  # monotonic time the last measured request ended

    def record(self, kind: str, measured: bool, latency_s: float, detail: str | None = None) -> None:
        if not measured:
            self.warmup[kind] += 1
            return
        self.counts[kind] += 1
        if kind == OK:
            self.histogram.record(int(latency_s * 1_000_000))
        if detail is not None and kind != HANG:
            self.detail[detail] = self.detail.get(detail, 0) + 1
        self.last_end = time.monotonic()

    def measured_total(self) -> int:
        return sum(self.counts.values())

    def result(self, elapsed_s: float, cpu_s: float, cpu_wall_s: float, *, engine: str, loop: str, partial: bool) -> LoadResult:
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
