"""The coordinated-omission picture, measured: a server that stalls 1 s of every 2 s.

Closed loop (one connection) hardly notices the stalls: its one request waits through each,
and the many fast requests in between keep its p99 low. Open loop at the same throughput keeps
sending through the stall; everything intended during it queues, and its latency, counted
from the intended start, puts the p99 near the stall's length. Both time series show the
stalls as seconds without a single ok (outcomes are placed in the second they ended in).

The measurement windows are aligned with the server's stalls (both use the system-wide
monotonic clock), so whole seconds fall inside stalls. Asserts are qualitative with wide
margins: this must hold on a busy two-core machine.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import pytest
from load_servers import timed_server

from harness.load import LoadResult, Workload, engine_asyncio
from harness.load.metrics import OK

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PERIOD_S, STALL_S = 2.0, 1.0
WARMUP_S, DURATION_S = 0.3, 4.0


def aligned_run(workload: Workload) -> LoadResult:
    """Run so that measurement starts as a stall starts (a multiple of PERIOD_S)."""
    workload.check()
    measure_start = math.ceil((time.monotonic() + WARMUP_S + 0.3) / PERIOD_S) * PERIOD_S
    return engine_asyncio.run(workload, start_at=measure_start - WARMUP_S)


def stall_workload(port: int, **changes: Any) -> Workload:
    values: dict[str, Any] = dict(
        host="127.0.0.1",
        port=port,
        connection="keep-alive",
        sleep_ms=1.0,
        duration_s=DURATION_S,
        warmup_s=WARMUP_S,
        deadline_s=3.0,
    )
    values.update(changes)
    return Workload(**values)


def ok_per_second(result: LoadResult) -> list[int]:
    return [i["counts"][OK] for i in result.intervals if i["t_s"] < result.elapsed_s]


def test_open_loop_counts_the_stalls_that_closed_loop_omits() -> None:
    with timed_server(stall_s=STALL_S, period_s=PERIOD_S) as port:
        closed = aligned_run(stall_workload(port, concurrency=1))
        rate = closed.throughput_rps
        opened = aligned_run(stall_workload(port, concurrency=64, rate=rate))
    assert closed.counts[OK] == closed.total and opened.counts[OK] == opened.total, (closed.counts, opened.counts)
    assert opened.load_model == "open" and opened.intended_rate_rps == pytest.approx(rate)
    assert not opened.behind_schedule  # the server keeps up on average: every request was sent

    # The classic picture: the open-loop p99 is about the stall; the closed-loop one is not.
    assert opened.latency_us["p99"] >= 500_000, opened.latency_us
    assert closed.latency_us["p99"] * 10 <= opened.latency_us["p99"], (closed.latency_us, opened.latency_us)

    # The time series shows the stalls: seconds with (next to) no ok, between busy ones.
    for result in (closed, opened):
        series = ok_per_second(result)
        assert len(series) == DURATION_S, result.intervals
        assert min(series) <= max(2, 0.05 * statistics.median(series)), series
        assert max(series) > 10 * max(1, min(series)), series
    # ...and the seconds add up to the totals.
    assert sum(i["counts"][OK] for i in opened.intervals) == opened.counts[OK]
