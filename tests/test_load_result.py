"""The load result's data contract: open-loop fields, the per-second series, exact merging,
JSON round trips (old dicts included), and when a run is behind schedule by the client's fault."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from load_servers import timed_server

from harness.load import LoadResult, Workload, run_load
from harness.load.histogram import bucket_floor
from harness.load.metrics import HANG, OK, OUTCOMES, RESET, LatencyHistogram, ScheduleStats, merge
from harness.load.outcome import Tally

pytestmark = pytest.mark.timeout(60)

INTERVAL_KEYS = {"t_s", "counts", "p50_us", "p99_us", "max_us"}


def filled_tally(seed: int, origin: float = 100.0, service: bool = False) -> Tally:
    """Outcomes ending over 3.5 s, with a silent second (the 2nd) and a warm-up outcome."""
    rng = random.Random(seed)
    tally = Tally(origin, service=service)
    tally.record(OK, False, origin - 0.5, 0.001, 0.001)
    for _ in range(500):
        second = rng.choice([0, 2, 3])
        now = origin + second + rng.random() * (0.5 if second == 3 else 1.0)
        latency = rng.lognormvariate(-6, 1)
        tally.record(rng.choice([OK, OK, OK, HANG, RESET]), True, now, latency, latency / 2, detail="ECONNRESET")
    return tally


def test_recording_a_bucket_floor_is_recording_the_value() -> None:
    rng = random.Random(11)
    values = [min(int(rng.lognormvariate(9, 3)) + 1, 60_000_000) for _ in range(20_000)]
    raw, floored = LatencyHistogram(), LatencyHistogram()
    for value in values:
        raw.record(value)
        floored.record(bucket_floor(value))
    assert raw.encode() == floored.encode() and raw.summary() == floored.summary()
    assert len({bucket_floor(v) for v in values}) < 0.75 * len(set(values))  # what the dicts gain
    assert [bucket_floor(v) for v in (1, 2047, 2048, 2049, 4097)] == [1, 2047, 2048, 2048, 4096]


def test_the_series_has_one_entry_per_second_and_adds_up_to_the_totals() -> None:
    tally = filled_tally(1)
    result = tally.result(4.0, 0.1, 4.0, engine="asyncio", loop="uvloop", partial=False)
    assert [i["t_s"] for i in result.intervals] == [0.0, 1.0, 2.0, 3.0]
    assert all(set(i) == INTERVAL_KEYS and set(i["counts"]) == set(OUTCOMES) for i in result.intervals)
    assert result.intervals[1]["counts"] == dict.fromkeys(OUTCOMES, 0)  # the silent second is there, as zeros
    assert result.intervals[1]["p99_us"] == 0
    for kind in OUTCOMES:
        assert sum(i["counts"][kind] for i in result.intervals) == result.counts[kind]
    total = LatencyHistogram()
    for _counts, histogram in result.interval_series():
        total.merge(histogram)
    # exactly, bucket by bucket (compared as decoded: a decode recomputes min and max from buckets)
    assert LatencyHistogram.decode(total.encode()) == result.latency_histogram()
    second = result.interval_series()[2][1].summary()
    assert (second["p50"], second["p99"], second["max"]) == (
        result.intervals[2]["p50_us"],
        result.intervals[2]["p99_us"],
        result.intervals[2]["max_us"],
    )


def test_closed_loop_result_has_the_closed_loop_values() -> None:
    result = filled_tally(2).result(4.0, 0.1, 4.0, engine="asyncio", loop="uvloop", partial=False)
    assert result.load_model == "closed" and result.arrival == ""
    assert result.intended_rate_rps is None
    assert result.achieved_rate_rps == pytest.approx(result.total / 4.0)
    assert result.service_histogram == result.histogram and result.service_latency_us == result.latency_us
    assert result.schedule_lag_us == {} and result.schedule_lag_histogram == ""
    assert not result.behind_schedule and not result.client_bound_schedule


def open_result(seed: int, intended: int, sent: int, late: int, util: float = 0.2) -> LoadResult:
    lag = LatencyHistogram()
    lag.record(1000 + seed, sent)
    stats = ScheduleStats(100.0, intended, sent, late, lag, "poisson")
    tally = filled_tally(seed, service=True)
    return tally.result(4.0, util * 4.0, 4.0, engine="asyncio", loop="uvloop", partial=False, schedule=stats)


def test_open_loop_result_keeps_service_time_and_schedule_apart() -> None:
    result = open_result(3, intended=400, sent=400, late=0)
    assert result.load_model == "open" and result.arrival == "poisson"
    assert result.intended_rate_rps == 100.0 and result.achieved_rate_rps == pytest.approx(100.0)
    assert result.service_latency_us["max"] < result.latency_us["max"]  # service = latency / 2 here
    assert set(result.schedule_lag_us) == {"p50", "p99", "max"}


@pytest.mark.parametrize(
    "intended, sent, late, util, behind, client",
    [
        (1000, 1000, 0, 0.2, False, False),  # kept up
        (1000, 995, 900, 1.0, False, False),  # 99.5 % sent: not behind, whatever else
        (1000, 800, 0, 0.2, True, False),  # behind, every connection busy: the server's limit
        (1000, 800, 50, 0.2, True, True),  # behind, 5 % dispatched late with a connection free
        (1000, 800, 5, 0.95, True, True),  # behind, a saturated client process
        (1000, 800, 5, 0.5, True, False),  # behind, 0.5 % late: noise, not the client
    ],
)
def test_behind_schedule_and_whose_fault(
    intended: int, sent: int, late: int, util: float, behind: bool, client: bool
) -> None:
    result = open_result(4, intended, sent, late, util)
    assert result.behind_schedule is behind
    assert result.client_bound_schedule is client


@pytest.mark.parametrize("model", ["closed", "open"])
def test_results_round_trip_through_json(model: str) -> None:
    if model == "open":
        result = open_result(5, intended=400, sent=390, late=3)
    else:
        result = filled_tally(5).result(4.0, 0.1, 4.0, engine="asyncio", loop="uvloop", partial=False)
    again = LoadResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_an_old_result_dict_reads_as_the_closed_loop_run_it_was() -> None:
    current = filled_tally(6).result(3.5, 0.1, 3.5, engine="threads", loop="threads", partial=False).to_dict()
    new_fields = {
        *("load_model", "arrival", "intended_rate_rps", "achieved_rate_rps"),
        *("requests_intended", "requests_sent", "late_sends", "service_histogram", "service_latency_us"),
        *("schedule_lag_us", "schedule_lag_histogram", "intervals", "interval_histograms"),
    }
    old = {k: v for k, v in current.items() if k not in new_fields}
    result = LoadResult.from_dict(old)
    assert result.load_model == "closed" and result.intended_rate_rps is None
    assert result.service_histogram == result.histogram and result.service_latency_us == result.latency_us
    assert result.intervals == [] and result.schedule_lag_us == {}
    merged = merge([result, result])  # no series known: none is made up
    assert merged.intervals == [] and merged.counts[OK] == 2 * result.counts[OK]
    with pytest.raises(ValueError, match="unknown LoadResult fields"):
        LoadResult.from_dict({**old, "no_such_field": 1})


def test_merge_adds_series_second_by_second_and_schedules_exactly() -> None:
    a, b = open_result(7, 400, 400, 1), open_result(8, 400, 380, 2)
    merged = merge([a, b])
    assert merged.intended_rate_rps == 200.0 and merged.requests_sent == 780 and merged.late_sends == 3
    assert merged.schedule_lag_histogram and LatencyHistogram.decode(merged.schedule_lag_histogram).total_count == 780
    for index, interval in enumerate(merged.intervals):
        for kind in OUTCOMES:
            assert interval["counts"][kind] == a.intervals[index]["counts"][kind] + b.intervals[index]["counts"][kind]
    both = LatencyHistogram().merge(a.interval_series()[3][1]).merge(b.interval_series()[3][1])
    assert merged.interval_series()[3][1] == LatencyHistogram.decode(both.encode())
    service = a.service_latency_histogram().merge(b.service_latency_histogram())
    assert merged.service_latency_histogram() == LatencyHistogram.decode(service.encode())


@pytest.mark.slow
def test_two_client_processes_share_one_open_loop_schedule() -> None:
    workload = Workload(
        "127.0.0.1",
        0,
        rate=300.0,
        concurrency=8,
        client_procs=2,
        duration_s=1.0,
        warmup_s=0.2,
        connection="keep-alive",
    )
    with timed_server() as port:
        result = run_load(_with_port(workload, port))
    assert result.client_procs == 2 and result.load_model == "open"
    assert result.intended_rate_rps == pytest.approx(300.0)
    # 300 due in the 1 s window, split between the processes (+-1 at each edge of each share).
    assert abs(result.requests_intended - 300) <= 4 and result.counts[OK] == result.total == result.requests_sent
    assert sum(i["counts"][OK] for i in result.intervals) == result.counts[OK]


def _with_port(workload: Workload, port: int) -> Workload:
    values: dict[str, Any] = {**workload.__dict__, "port": port}
    return Workload(**values)
