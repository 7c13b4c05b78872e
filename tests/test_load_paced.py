"""The engine's timers and the paced closed loop.

`Timers` (harness/load/timers.py) must fire callbacks in the order of their instants, never
before them, re-arm for what a callback sets, and drop what is pending on close -- with the
timerfd and with the loop's own timers (the fallback). The paced closed loop (Locust's
constant_throughput, `--load-model closed --rate R`) must send R requests/s against a fast
server, and against a slow one wait for each response: fewer requests, each measured from its
actual send (coordinated omission, kept on purpose) -- where the open loop at the same rate
counts the queueing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from load_servers import timed_server

from harness.load import Workload, run_load
from harness.load.engines import run_bound_s
from harness.load.metrics import OK
from harness.load.timers import MIN_PRECISE_S, MIN_TIMER_S, Timers, wake_floor_s

pytestmark = pytest.mark.timeout(60)


def _fire(precise: bool, offsets: list[float], chain: bool = False) -> tuple[list[tuple[int, float, float]], bool]:
    """Set a timer at now + each offset; returns (index, intended, fired at) in firing order."""
    loop = asyncio.new_event_loop()
    fired: list[tuple[int, float, float]] = []
    try:
        timers = Timers(loop, precise=precise)
        start = time.monotonic()
        done = loop.create_future()

        def make(index: int, when: float) -> Any:
            def callback() -> None:
                fired.append((index, when, time.monotonic()))
                if chain and index == 0:  # a callback setting a timer (the dispatcher does)
                    timers.call_at(time.monotonic() + 0.002, make(99, time.monotonic() + 0.002))
                if len(fired) == len(offsets) + (1 if chain else 0) and not done.done():
                    done.set_result(None)

            return callback

        for index, offset in enumerate(offsets):
            timers.call_at(start + offset, make(index, start + offset))
        loop.run_until_complete(asyncio.wait_for(done, 5.0))
        precise_got = timers.precise
        timers.close()
    finally:
        loop.close()
    return fired, precise_got


@pytest.mark.parametrize("precise", [True, False])
def test_timers_fire_in_order_of_their_instants_and_never_early(precise: bool) -> None:
    offsets = [0.030, 0.010, 0.020, 0.0005, 0.0, -0.010, 0.020]  # out of order, a tie, one past
    fired, _ = _fire(precise, offsets)
    assert [index for index, _, _ in fired] == [5, 4, 3, 1, 2, 6, 0]  # by instant; ties as set
    assert all(at >= when for _, when, at in fired)


def test_timers_use_a_timerfd_on_linux() -> None:
    _, precise = _fire(True, [0.0])
    assert precise == sys.platform.startswith("linux")
    _, fallback = _fire(False, [0.0])
    assert fallback is False


@pytest.mark.parametrize("precise", [True, False])
def test_a_timer_set_by_a_callback_fires_too(precise: bool) -> None:
    fired, _ = _fire(precise, [0.001, 0.050], chain=True)
    assert [index for index, _, _ in fired] == [0, 99, 1]


def test_the_wake_up_floor_grows_with_the_rate_between_100_us_and_1_ms() -> None:
    assert wake_floor_s(2000.0) == MIN_PRECISE_S  # 0.5 ms apart: a wake-up per request
    assert wake_floor_s(10_000.0) == pytest.approx(MIN_PRECISE_S)
    assert wake_floor_s(50_000.0) == pytest.approx(0.0005)
    assert wake_floor_s(1e6) == MIN_TIMER_S
    rates = [1e3 * 2**k for k in range(10)]
    floors = [wake_floor_s(r) for r in rates]
    assert floors == sorted(floors)


def test_close_drops_pending_timers_and_the_descriptor() -> None:
    loop = asyncio.new_event_loop()
    try:
        timers = Timers(loop)
        fired: list[int] = []
        timers.call_at(time.monotonic() + 0.01, lambda: fired.append(1))
        timers.close()
        loop.run_until_complete(asyncio.sleep(0.03))
        assert fired == []
    finally:
        loop.close()


# -- the paced closed loop ---------------------------------------------------------------------


def paced(**changes: Any) -> Workload:
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=8080, rate=100.0, paced=True, concurrency=2, duration_s=1.0, warmup_s=0.0
    )
    values.update(changes)
    return Workload(**values).check()


def test_a_paced_workload_is_a_closed_loop_at_a_rate() -> None:
    workload = paced(rate=100.0, concurrency=4)
    assert workload.load_model == "closed" and workload.is_paced
    assert workload.pace_period_s() == pytest.approx(0.04)  # 4 connections share 100/s
    shares = paced(rate=100.0, concurrency=4, client_procs=2).share(2)
    assert [s.pace_period_s() for s in shares] == pytest.approx([0.04, 0.04])
    plain = Workload(host="127.0.0.1", port=8080, paced=True).check()  # no rate: a plain closed loop
    assert plain.load_model == "closed" and not plain.is_paced
    # N requests, paced: each connection's N/c requests wait for their slots, within the bound.
    assert run_bound_s(paced(duration_s=None, requests=10, rate=10.0, concurrency=1)) >= 10 * 0.1


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with timed_server() as server_port:
        yield server_port


def test_a_paced_closed_loop_sends_its_rate_to_a_fast_server(port: int) -> None:
    result = run_load(paced(port=port, rate=100.0, concurrency=2, duration_s=1.0, connection="keep-alive"))
    assert result.load_model == "closed" and result.intended_rate_rps == 100.0
    assert result.counts[OK] == result.total
    assert 95 <= result.total <= 102  # 100 slots in the window; none made up, none sent early
    assert result.schedule_lag_us == {}  # no schedule of intended times: latency is from the send


@pytest.mark.slow
def test_a_paced_closed_loop_waits_for_a_slow_server_where_the_open_loop_queues(port: int) -> None:
    # One connection, 50 ms per answer, paced or scheduled every 25 ms (40/s).
    slow = dict(port=port, rate=40.0, concurrency=1, duration_s=0.5, sleep_ms=50.0, deadline_s=5.0)
    closed = run_load(paced(connection="keep-alive", **slow))
    opened = run_load(paced(paced=False, connection="keep-alive", **slow))
    # Closed: a request every 50 ms (half the pace), each measured from its send: ~50 ms.
    assert closed.counts[OK] == closed.total and 8 <= closed.total <= 12
    assert closed.achieved_rate_rps is not None and closed.achieved_rate_rps < 0.6 * 40.0
    assert closed.latency_us["p99"] < 150_000
    # Open: all 20 sent, the later ones after queueing for the one connection (counted).
    assert opened.load_model == "open" and opened.total == 20
    assert opened.latency_us["max"] > 4 * closed.latency_us["max"]
