"""Benchmarks: parse one typical request and render its response, our parser vs h11.

Both sides do the same job per round on a persistent (keep-alive) connection object: take the
bytes of one request as a load generator sends them, produce the request event, and serialise a
200 response with a 1 KiB body and the same four headers (Server, Date, Content-Type,
Content-Length). The Date value is formatted once for h11, as our renderer's per-second cache
does. The figures back the README's "why not h11" note.

Disabled by default (`--benchmark-disable` in pyproject addopts: each runs once, as a test).
Measure with:

    python -m pytest tests/test_protocol_bench.py --benchmark-enable
"""

from __future__ import annotations

from email.utils import formatdate

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.server.protocol import Request, RequestParser, Response, render

h11 = pytest.importorskip("h11")

REQUEST = (
    b"GET /work?cpu_us=200&sleep_ms=5&bytes=1024 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"User-Agent: hangbench/0.1\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)
BODY = b"x" * 1024
# Our renderer caches the Date header per second; give h11 the same advantage.
DATE = formatdate(usegmt=True)


def test_bench_ours(benchmark: BenchmarkFixture) -> None:
    parser = RequestParser()
    response = Response(200, BODY)

    def one_round() -> bytes:
        [request] = parser.feed(REQUEST)
        assert isinstance(request, Request)  # as the h11 round checks its event types
        return render(response, request, request.keep_alive)

    benchmark.group = "parse+render one request"
    out = benchmark(one_round)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(BODY)
    assert isinstance(parser.feed(REQUEST)[0], Request)


def test_bench_h11(benchmark: BenchmarkFixture) -> None:
    conn = h11.Connection(h11.SERVER)

    def one_round() -> bytes:
        conn.receive_data(REQUEST)
        request = conn.next_event()
        end = conn.next_event()
        assert type(request) is h11.Request and type(end) is h11.EndOfMessage
        headers = [
            ("Server", "hangbench"),
            ("Date", DATE),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(BODY))),
        ]
        out = conn.send(h11.Response(status_code=200, headers=headers))
        out += conn.send(h11.Data(data=BODY))
        out += conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
        return out

    benchmark.group = "parse+render one request"
    out = benchmark(one_round)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(BODY)
