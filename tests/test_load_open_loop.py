"""Open loop: intended times, catch-up after a client stall, waiting for a connection, and the
latency of a request counted from its intended start -- not from when it was actually sent.

The schedule tests drive the sans-I/O `OpenLoop` with a fake clock. The engine tests stall the
client for real (a progress callback runs on the engine's loop, so sleeping in it stalls the
loop) or starve it of connections (one connection, a slow server), and check what a
coordinated-omission-free client must report: latencies from the intended start, far above the
service times. Measured from the actual send instead, every one of them would fail.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from load_servers import timed_server

from harness.load import LoadResult, Progress, Workload, run_load
from harness.load.arrivals import Arrivals
from harness.load.metrics import HANG, OK, LatencyHistogram
from harness.load.open_loop import LATE_S, OpenLoop
from harness.load.outcome import Tally
from harness.load.schedule import Schedule

pytestmark = pytest.mark.timeout(60)


def open_workload(**changes: Any) -> Workload:
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=8080, rate=1000.0, concurrency=8, duration_s=10.0, warmup_s=0.0, deadline_s=2.0
    )
    values.update(changes)
    return Workload(**values).check()


# -- intended times --------------------------------------------------------------------------


def test_uniform_times_are_computed_from_the_start_not_accumulated() -> None:
    times = Arrivals(open_workload(rate=1000.0), start=100.0).take(5001)
    assert times[:3] == [100.0, 100.001, 100.002]
    assert times[5000] == pytest.approx(105.0, abs=1e-9)  # no drift after 5000 steps


def test_uniform_shares_interleave_into_the_whole_schedule() -> None:
    whole = Arrivals(open_workload(rate=300.0), start=0.0).take(30)
    parts = [Arrivals(w, start=0.0).take(10) for w in open_workload(rate=300.0, client_procs=3, concurrency=3).share(3)]
    assert sorted(t for part in parts for t in part) == pytest.approx(whole)
    assert parts[1][:2] == pytest.approx([1 / 300, 4 / 300])


def test_poisson_times_are_seeded_and_have_the_rate() -> None:
    first = Arrivals(open_workload(arrival="poisson", seed=7), start=0.0).take(20_000)
    again = Arrivals(open_workload(arrival="poisson", seed=7), start=0.0).take(20_000)
    other = Arrivals(open_workload(arrival="poisson", seed=8), start=0.0).take(20_000)
    assert first == again and first != other
    gaps = [b - a for a, b in zip([0.0, *first], first, strict=False)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 1000, rel=0.05)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential
    assert all(b > a for a, b in itertools.pairwise(first))


def test_poisson_shares_are_independent_streams_at_a_share_of_the_rate() -> None:
    shares = open_workload(arrival="poisson", client_procs=2, concurrency=2).share(2)
    a, b = (Arrivals(w, start=0.0).take(5000) for w in shares)
    assert a != b
    assert a[-1] == pytest.approx(5000 / 500, rel=0.1)  # each at 500/s


# -- the sans-I/O schedule keeper ------------------------------------------------------------


def keeper(**changes: Any) -> tuple[OpenLoop, Tally]:
    workload = open_workload(**changes)
    schedule = Schedule(workload, start=0.0)
    tally = Tally(schedule.measure_start, service=True)
    return OpenLoop(workload, schedule, tally), tally


def test_nothing_is_sent_before_its_intended_time() -> None:
    loop, _ = keeper()
    free = list(range(8))
    assert [t for _, t, _ in loop.due(0.0, free)] == [0.0]
    assert loop.due(0.0009, free) == []
    assert [t for _, t, _ in loop.due(0.0021, free)] == pytest.approx([0.001, 0.002])


def test_catch_up_sends_everything_that_came_due_during_a_stall_at_once() -> None:
    loop, tally = keeper(concurrency=1000)
    free = list(range(1000))
    sends = loop.due(0.5, free)  # the client stalled from 0 to 0.5 s
    assert [t for _, t, _ in sends] == pytest.approx([i / 1000 for i in range(501)])
    assert loop.sent == loop.intended == 501
    assert loop.late == sum(1 for _, t, _ in sends if 0.5 - t > LATE_S)  # the client's own lateness
    lag = loop.stats().lag.summary()
    assert lag["max"] == pytest.approx(500_000, rel=0.01) and lag["p50"] == pytest.approx(250_000, rel=0.01)
    # The responses come 1 ms after the send; the latency counts from the intended time.
    for _, intended, measured in sends:
        tally.record(OK, measured, 0.501, 0.501 - intended, 0.001)
    assert tally.histogram.summary()["max"] == pytest.approx(501_000, rel=0.01)
    assert tally.service_histogram().summary()["max"] == pytest.approx(1_000, rel=0.01)  # type: ignore[union-attr]


def test_a_request_with_no_free_connection_waits_and_its_wait_is_lag() -> None:
    loop, tally = keeper(rate=100.0, deadline_s=0.5)
    free = ["conn"]
    assert len(loop.due(0.0, free)) == 1 and free == []
    assert loop.due(0.035, free) == []  # 3 more came due: they wait, first come first served
    assert [t for t, _ in loop.waiting] == pytest.approx([0.01, 0.02, 0.03])
    assert loop.next_waiting(0.04) == pytest.approx((0.01, True))  # the connection freed up at 40 ms
    assert loop.late == 0  # waiting for a busy connection is not the client's lateness
    assert loop.stats().lag.summary()["max"] == pytest.approx(30_000, rel=0.01)
    loop.expire(0.525)  # past 0.02 + 0.5: a hang without ever being sent
    assert tally.counts[HANG] == 1 and [t for t, _ in loop.waiting] == pytest.approx([0.03])
    assert loop.sent == 2 and loop.intended == 4


def test_a_request_already_past_its_deadline_is_a_hang_not_a_send() -> None:
    loop, tally = keeper(rate=10.0, deadline_s=0.2)
    free = ["a", "b", "c"]
    sends = loop.due(0.25, free)
    assert [t for _, t, _ in sends] == pytest.approx([0.1, 0.2])
    assert tally.counts[HANG] == 1 and loop.sent == 2 and loop.intended == 3


def test_warmup_arrivals_are_sent_but_not_measured_and_the_window_ends_the_schedule() -> None:
    loop, _ = keeper(rate=10.0, warmup_s=0.2, duration_s=0.3)
    free = list(range(10))
    sends = loop.due(0.6, free)
    assert [t for _, t, _ in sends] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [measured for _, _, measured in sends] == [False, False, True, True, True]
    assert not loop.issuing and loop.done and loop.intended == 3


# -- the engine: latency from the intended start ---------------------------------------------


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with timed_server() as server_port:
        yield server_port


@pytest.mark.slow
def test_requests_due_while_the_client_stalled_count_their_wait(port: int) -> None:
    stalled: list[float] = []

    def stall_once(progress: Progress) -> None:  # runs on the engine's loop: this stalls it
        if not stalled:
            stalled.append(progress.elapsed_s)
            time.sleep(0.5)

    result = run_load(
        open_workload(port=port, rate=200.0, concurrency=128, duration_s=1.6, connection="keep-alive"),
        progress=stall_once,
    )
    assert stalled, "the progress callback never ran"
    assert result.load_model == "open" and result.counts[OK] == result.total > 0
    assert not result.behind_schedule  # everything was sent, late
    assert result.late_sends >= 20  # ~100 came due during the stall, with connections free
    assert result.schedule_lag_us["max"] >= 400_000
    # Sent at once after the stall, answered at once: short service, long corrected latency.
    assert result.latency_us["max"] >= 400_000
    assert result.latency_us["p90"] >= 100_000
    assert_latency_is_lag_plus_service(result)


def test_the_latency_of_a_request_that_waited_for_the_only_connection_counts_the_wait(port: int) -> None:
    # One connection, 50 ms per answer, a request every 25 ms: the k-th waits about 25k ms.
    result = run_load(
        open_workload(
            port=port, rate=40.0, concurrency=1, duration_s=0.5, sleep_ms=50.0, deadline_s=5.0, connection="keep-alive"
        )
    )
    assert result.counts[OK] == result.total == result.requests_intended == result.requests_sent
    # Waiting for the busy connection is not the client's lateness (else ~19 of the 20 would
    # count); a loaded machine may still stall this client past LATE_S once or twice.
    assert result.late_sends <= 2
    assert result.latency_us["max"] >= 300_000
    assert result.schedule_lag_us["max"] >= 250_000
    assert result.service_latency_us["p99"] * 2 < result.latency_us["p99"]
    assert_latency_is_lag_plus_service(result)


def test_a_rate_the_server_cannot_sustain_is_behind_schedule_by_the_servers_fault(port: int) -> None:
    # 4 connections x 50 ms per answer = 80 answers/s at most, asked for 400/s: the queue grows
    # until requests pass their deadline unsent. The row must say so, and not blame the client.
    result = run_load(
        open_workload(
            port=port, rate=400.0, concurrency=4, duration_s=0.8, sleep_ms=50.0, deadline_s=0.3, connection="keep-alive"
        )
    )
    assert result.behind_schedule and not result.client_bound_schedule
    assert result.counts[HANG] > 0 and result.counts[OK] > 0
    assert result.achieved_rate_rps is not None and result.intended_rate_rps == 400.0
    assert result.achieved_rate_rps < 0.99 * result.intended_rate_rps
    assert result.throughput_rps < 0.5 * result.intended_rate_rps  # ok/s: what the server managed
    assert result.requests_sent < result.requests_intended == pytest.approx(320, abs=2)


def assert_latency_is_lag_plus_service(result: LoadResult) -> None:
    """Every ok request's latency is its send lag plus its service time, so the means add up
    (to the histograms' 0.1 % resolution) -- and the lag here is far from zero."""
    corrected = result.latency_histogram().mean_us()
    service = result.service_latency_histogram().mean_us()
    lag = LatencyHistogram.decode(result.schedule_lag_histogram).mean_us()
    assert lag >= 30_000
    assert corrected - service == pytest.approx(lag, rel=0.05, abs=1_000)
