"""Deriving a case's record from its raw measurements (harness.results.derive), and the progress
line that shows a case while it runs. In-process, no server."""

from __future__ import annotations

import io
from typing import Dict, Tuple

import pytest

from harness.errors import COMPLETED, INTERRUPTED, NO_RESPONSE, STATUSES
from harness.load import Progress
from harness.load.metrics import LatencyHistogram, LoadResult
from harness.progress import ProgressPrinter
from harness.results.derive import FD_GROWTH_SLACK, CpuMark, Measurements, derive, is_client_bound
from harness.results.records import StrategyRecord

BASE = StrategyRecord("threads", COMPLETED, python="3.11.7")


def load_result(counts: Dict[str, int], elapsed_s: float = 2.0, client_cpu_s: float = 0.4, **kw: object) -> LoadResult:
    histogram = LatencyHistogram()
    for _ in range(counts.get("ok", 0)):
        histogram.record(1500)
    return LoadResult.build(counts, histogram, elapsed_s, client_cpu_s, engine="asyncio", **kw)  # type: ignore[arg-type]


def measurements(
    result: LoadResult,
    cpu: Tuple[float, float] = (1.0, 1.5),
    machine: Tuple[Tuple[float, float], Tuple[float, float]] = ((10.0, 100.0), (11.0, 104.0)),
    fds: Tuple[int, int] = (10, 12),
    requests_at_start: int = 0,
) -> Measurements:
    start = CpuMark(cpu[0], requests_at_start, machine[0][0], machine[0][1], at=100.0)
    end = CpuMark(cpu[1], result.total, machine[1][0], machine[1][1], at=102.0)
    return Measurements(result, start, end, peak_rss_bytes=64 * 2**20, server_fds=fds, concurrency=4)


def test_derive_fills_every_measured_field() -> None:
    record = derive(BASE, measurements(load_result({"ok": 1000, "hang": 10, "reset": 5})))
    assert record.status == COMPLETED
    assert record.requests["ok"] == 1000 and record.requests["hang"] == 10
    assert record.throughput_rps == pytest.approx(500.0)
    assert record.hang_rate == pytest.approx(10 / 1015)
    assert record.server_cpu_util == pytest.approx(0.25)  # 0.5 CPU s over 2 s
    assert record.server_cpu_s_per_1k == pytest.approx(1000 * 0.5 / 1015)
    assert record.machine_cpu_busy == pytest.approx(0.25)  # 1 busy s of 4
    assert record.server_peak_rss_mb == pytest.approx(64.0)
    assert record.server_fds == [10, 12] and record.leaks == []
    assert record.latency_us["p50"] > 0 and record.histogram


@pytest.mark.parametrize(
    "counts, status",
    [
        ({"ok": 0, "hang": 40}, NO_RESPONSE),
        ({"reset": 30, "closed": 3}, NO_RESPONSE),
        ({"refused": 12}, NO_RESPONSE),
        ({"ok": 1, "hang": 40}, COMPLETED),
        ({"http_error": 5}, COMPLETED),  # an answer, if not a good one
        ({"malformed": 5}, COMPLETED),
        ({}, COMPLETED),  # nothing sent: nothing to say
    ],
)
def test_a_strategy_that_answered_nothing_is_no_response(counts: Dict[str, int], status: str) -> None:
    assert derive(BASE, measurements(load_result(counts))).status == status


def test_no_response_is_a_documented_status_and_other_statuses_stay() -> None:
    assert NO_RESPONSE in STATUSES
    interrupted = StrategyRecord("threads", INTERRUPTED)
    assert derive(interrupted, measurements(load_result({"hang": 3}))).status == INTERRUPTED
    partial = load_result({"hang": 3}, partial=True)
    assert derive(BASE, measurements(partial)).status == COMPLETED  # cut short: not a verdict


def test_fd_growth_past_the_slack_is_a_leak() -> None:
    grown = 10 + 2 * 4 + FD_GROWTH_SLACK + 1
    record = derive(BASE, measurements(load_result({"ok": 5}), fds=(10, grown)))
    assert record.leaks == ["the server's open fds grew from 10 to %d during the run" % grown]
    fine = derive(BASE, measurements(load_result({"ok": 5}), fds=(10, grown - 1)))
    assert fine.leaks == []


def test_cpu_per_request_counts_only_requests_after_the_start_mark() -> None:
    record = derive(BASE, measurements(load_result({"ok": 1000}), requests_at_start=500))
    assert record.server_cpu_s_per_1k == pytest.approx(1000 * 0.5 / 500)


def test_client_bound() -> None:
    assert is_client_bound(0.9, 0.9, 0.5, 0.5)  # one client process used most of a core
    assert not is_client_bound(0.3, 0.3, 1.0, 0.5)
    assert is_client_bound(0.5, 0.8, 1.0, 0.95)  # saturated machine, client >= half the server
    assert not is_client_bound(0.5, 0.4, 1.0, 0.95)


# --------------------------------------------------------------------------- the progress line


class Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_line_shows_rate_ok_hang_and_time_left() -> None:
    log = Log()
    printer = ProgressPrinter(stream=log, warmup_s=1.0, duration_s=10.0)
    printer.start_case(1, 2, "asyncio-executor")
    printer.progress(Progress("measure", 4.0, {"ok": 400, "hang": 2, "reset": 1}))
    line = log.getvalue().splitlines()[-1]
    assert line.startswith("[1/2] asyncio-executor: measure")
    for fragment in ("100 ok/s", "ok 400", "hang 2", "errors 1", "6s left"):
        assert fragment in line, line
    assert "11s left" in printer.format(Progress("warmup", 0.0, {}))


def test_progress_line_of_a_requests_run_has_no_time_left() -> None:
    printer = ProgressPrinter(stream=Log(), warmup_s=1.0, duration_s=None)
    printer.start_case(1, 1, "threads")
    assert "left" not in printer.format(Progress("measure", 3.0, {"ok": 30}))


def test_quiet_progress_prints_nothing() -> None:
    log = Log()
    printer = ProgressPrinter(quiet=True, stream=log)
    printer.start_case(1, 1, "threads")
    printer.progress(Progress("measure", 1.0, {"ok": 1}))
    printer.end_case(StrategyRecord("threads", COMPLETED))
    assert log.getvalue() == ""
