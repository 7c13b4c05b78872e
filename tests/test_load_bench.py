"""Benchmarks of the client's hot path: the response reader (vs h11), the open-loop schedule
keeping per request, and end-to-end throughput of the asyncio engine (closed and open loop)
against a trivial fixed-response server in another process.

Disabled by default (`--benchmark-disable` in pyproject addopts: each runs once, as a test,
and asserts behaviour only). Measure with:

    python -m pytest tests/test_load_bench.py --benchmark-enable

The end-to-end figure (requests/s, in the benchmark's extra_info and printed with -s) is only
meaningful on an idle machine with the server and the client on different cores. The open-loop
rate goal (>= 0.8 x the closed-loop maximum) is measured by bench/open_vs_closed.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from load_servers import timed_server

from harness.load import Workload, run_load
from harness.load.metrics import OK
from harness.load.open_loop import OpenLoop
from harness.load.outcome import Tally
from harness.load.response import ResponseReader
from harness.load.schedule import Schedule

pytestmark = pytest.mark.timeout(120)

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: hangbench\r\nDate: Fri, 27 Nov 2026 10:25:38 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + b"x" * 64
)


def test_reader_parses_a_typical_response(benchmark: Any) -> None:
    reader = ResponseReader()

    def one() -> str | None:
        reader.reset()
        return reader.feed(RESPONSE)

    assert benchmark(one) == OK


def test_h11_parses_the_same_response(benchmark: Any) -> None:
    h11 = pytest.importorskip("h11")

    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(method="GET", target="/", headers=[("Host", "x")])

    def one() -> Any:  # one request/response cycle on a persistent connection
        conn.send(request)
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        events = [conn.next_event() for _ in range(3)]
        conn.start_next_cycle()
        return events[-1]

    assert type(benchmark(one)).__name__ == "EndOfMessage"


def test_open_loop_bookkeeping_per_request(benchmark: Any) -> None:
    """What open loop adds per request: come due, take a connection, wait, be handed over."""
    workload = Workload("127.0.0.1", 8080, rate=1_000_000.0, concurrency=1, duration_s=1000.0, warmup_s=0.0)
    schedule = Schedule(workload, 0.0)
    keeper = OpenLoop(workload, schedule, Tally(0.0, service=True))
    clock = [0.0]

    def thousand() -> int:  # 1000 requests due over 1 ms, one connection: all but one wait
        clock[0] += 0.001
        free = ["conn"]
        sent = len(keeper.due(clock[0], free))
        for _ in range(1000):
            if keeper.next_waiting(clock[0]) is None:
                break
            sent += 1
        return sent

    assert abs(benchmark(thousand) - 1000) <= 1  # 1000 per ms, give or take one at the edges


@pytest.fixture(scope="module")
def fixed_port() -> Iterator[int]:
    """A server that answers every request at once (tests/load_servers.py, no stall), on uvloop."""
    with timed_server() as port:
        yield port


@pytest.mark.parametrize(
    "connection, rate",
    [("keep-alive", None), ("close", None), ("keep-alive", 500.0)],
    ids=["keep-alive", "close", "keep-alive-open-500"],
)
def test_asyncio_engine_throughput(benchmark: Any, fixed_port: int, connection: str, rate: float | None) -> None:
    workload = Workload(
        "127.0.0.1", fixed_port, concurrency=32, duration_s=1.0, warmup_s=0.2, connection=connection, rate=rate
    )
    started = time.monotonic()
    result = benchmark.pedantic(run_load, args=(workload,), rounds=1, iterations=1)
    benchmark.extra_info.update(
        requests_per_s=round(result.throughput_rps),
        p99_us=result.latency_us["p99"],
        schedule_lag_p99_us=result.schedule_lag_us.get("p99"),
        client_cpu_util=round(result.client_cpu_util, 2),
    )
    print(
        "\nasyncio engine, %s, %s, 32 connections: %.0f req/s, p99 %d us, client CPU %.2f (%.1fs)"
        % (
            result.load_model + ("" if rate is None else " at %g/s" % rate),
            connection,
            result.throughput_rps,
            result.latency_us["p99"],
            result.client_cpu_util,
            time.monotonic() - started,
        )
    )
    assert result.counts[OK] == result.total > 0
