"""The inline loop's fast path sends what its general path sends, for the same reads.

One `InlineHttp` takes the fast path (`answer_one`) where it can, another (`fast = False`)
never does; both are fed the same reads through a recording transport, and what each wrote,
closed and paused, and the session state after each read, must be the same. The reads cover
whole heads, pipelining, partial heads, bodies, errors, `Connection: close`, HTTP/1.0, HEAD,
large bodies past the transport's high-water mark, and a connection parked over the cap.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional, Sequence, Tuple

import pytest

from harness.server import render
from harness.server.app import App, Limits, Work
from harness.server.inline_loop import InlineHttp, Served

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def get(target: str, *headers: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    return ("\r\n".join(["%s %s %s" % (method, target, version), "Host: t", *headers]) + "\r\n\r\n").encode()


class Clock:
    def time(self) -> float:
        return 1_700_000_000.0  # one Date for both runs


class Transport:
    """Records what the protocol does to it; past `high_water` unsent bytes it pauses writing."""

    def __init__(self, high_water: Optional[int], sock: Optional[socket.socket]) -> None:
        self.high_water = high_water
        self.sock = sock
        self.protocol: Optional[InlineHttp] = None
        self.log: List[Tuple[Any, ...]] = []
        self.unsent = 0

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def write(self, data: bytes) -> None:
        self.log.append(("write", bytes(data)))
        self.unsent += len(data)
        if self.high_water is not None and self.unsent > self.high_water and self.protocol is not None:
            self.protocol.pause_writing()

    def drain(self) -> None:
        self.unsent = 0
        assert self.protocol is not None
        if self.protocol.paused:
            self.protocol.resume_writing()

    def close(self) -> None:
        self.log.append(("close",))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.log.append(("write_eof",))  # the linger after an error response (inline_loop.py)

    def abort(self) -> None:
        self.log.append(("abort",))

    def pause_reading(self) -> None:
        self.log.append(("pause_reading",))

    def resume_reading(self) -> None:
        self.log.append(("resume_reading",))


class General(InlineHttp):
    fast = False


def run(
    cls: type, reads: Sequence[bytes], high_water: Optional[int], cap: int, sock: Optional[socket.socket]
) -> List[Tuple[Any, ...]]:
    """Connect one `cls` (after a first, idle connection when `cap` is 1: this one is parked),
    feed it `reads` (b"" is a drain of the transport), end the first connection; the log."""
    app = App(Work(bytes=7), Limits(max_connections=cap))
    served = Served(cap)
    first = cls(app, served)
    first.connection_made(Transport(None, None))
    transport = Transport(high_water, sock)
    conn = cls(app, served)
    transport.protocol = conn
    conn.connection_made(transport)
    for data in reads:
        if data:
            conn.data_received(data)
        else:
            transport.drain()
        session = conn.session
        transport.log.append(
            ("state", session.open, session.linger, session.head_deadline is None, session.parser.idle, conn.paused)
        )
    first.connection_lost(None)  # a parked connection is let in, and answers what it holds
    transport.log.append(("state", conn.session.open, conn.parked))
    return transport.log


BIG = "/work?bytes=%d" % (1 << 17)
CASES = {
    "wrk": [WRK, WRK, WRK],
    "clients": [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1\r\nUser-Agent: ApacheBench/2.3\r\n\r\n",
        get("/work?cpu_us=0&sleep_ms=0&bytes=64", "Connection: keep-alive"),
    ],
    "routes": [get("/work"), get("/work?bytes=3"), get("/nowhere"), get("/", method="DELETE"), get("/work?bytes=x")],
    "work": [get("/work?cpu_us=20&sleep_ms=0.1&bytes=0"), get("/work?bytes=1&bytes=2"), get("/work?sleep_ms=-1")],
    "head": [get("/work?bytes=9", method="HEAD"), get("/", method="HEAD", version="HTTP/1.0")],
    "http10": [get("/", version="HTTP/1.0"), WRK],
    "http10-keep-alive": [get("/", "Connection: keep-alive", version="HTTP/1.0"), WRK],
    "close": [get("/", "Connection: close"), WRK],
    "pipelined": [WRK + get("/work?bytes=2"), WRK, get("/a") + get("/b") + get("/c")],
    "partial": [WRK[:10], WRK[10:], WRK, WRK[:-1], b"\n", WRK],
    "stray-crlf": [b"\r\n" + WRK, WRK],
    "body": [
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        WRK,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n",
        b"ab",
        b"c",
        WRK,
    ],
    "garbage": [WRK, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", WRK],
    "bad-head": [WRK, get("/", "X: a\x00b"), WRK],
    "no-host": [b"GET / HTTP/1.1\r\n\r\n", WRK],
    "http2": [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"],
    "too-long": [get("/" + "a" * 9000)],
    "big-body-paused": [get(BIG), WRK, get("/work?bytes=5"), b"", WRK, b""],
    "big-pipelined-paused": [get(BIG) + WRK + get(BIG), b"", WRK, b"", b"", WRK],
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("high_water", [None, 1 << 16])
@pytest.mark.parametrize("cap", [1000, 1])
def test_fast_path_sends_what_the_general_path_sends(
    name: str, high_water: Optional[int], cap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "time", Clock())
    general = run(General, CASES[name], high_water, cap, None)
    fast = run(InlineHttp, CASES[name], high_water, cap, None)
    assert fast == general
    assert any(entry[0] == "write" for entry in fast)


def test_fast_path_with_a_real_socket_for_the_peer_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a socket, `gone` is a real peer check: the peer closes between reads."""
    monkeypatch.setattr(render, "time", Clock())
    logs = []
    for cls in (General, InlineHttp):
        listener = socket.create_server(("127.0.0.1", 0))
        with listener, socket.create_connection(listener.getsockname(), timeout=5) as client:
            served, _ = listener.accept()
            with served:
                reads = [WRK, get("/work?cpu_us=10")]
                log = run(cls, reads, None, 1000, served)
                client.close()
                log += run(cls, [WRK + WRK, WRK], None, 1000, served)
                logs.append(log)
    assert logs[0] == logs[1]
