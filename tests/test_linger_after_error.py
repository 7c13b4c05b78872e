"""Every server path lingers after an error response, the 408 among them, before it closes.

A server that closes at once after its last word turns the client's next byte into a reset,
and a reset can destroy the response before the client has read it. The blocking server has
lingered since the first wave (connection.py `linger_close`; test_connection_io.py); here the
paths that cannot block where they close: the reactor's sweep (its 408 is sent by the selector
thread, so a pool thread lingers), the inline event loops (`asyncio`, `reuseport`: FIN, then
discarding reads until EOF or the sweep ends the linger) and the asyncio streams adapter
(`asyncio-executor`). The client receives the 408, sends a few late header bytes, and must still
read to a clean EOF: closed at once, the server answers the first with a reset, and the next send
fails.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, List

import pytest
from session_cases import TIMEOUT_S, app, split_responses
from test_connection_io import read_to_eof
from test_reactor import running as running_reactor

from harness.server import connection
from harness.server.app import App, Limits, Work, handle
from harness.server.connection import serve_asyncio
from harness.server.inline_loop import InlineHttp, Served, serve_inline

pytestmark = pytest.mark.timeout(60)
HEAD_TIMEOUT_S = 0.3
HOST = "127.0.0.1"


def late_bytes_after(sock: socket.socket, first: bytes) -> bytes:
    """Send a few more bytes after the server's last word: a server that closed at once answers
    the first with a reset, and the next send then fails (EPIPE or ECONNRESET); a lingering one
    reads and drops them. Then read to the FIN."""
    for _ in range(3):
        time.sleep(0.05)
        sock.sendall(b"X-Late: 1\r\n")
    return first + read_to_eof(sock)


def late_byte_after_the_408(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        return late_bytes_after(sock, sock.recv(65536))  # the 408, once the head deadline has passed


@contextmanager
def running_inline() -> Iterator[int]:
    listener = socket.create_server((HOST, 0))
    stop_r, stop_w = os.pipe()
    thread = threading.Thread(
        target=serve_inline, args=(listener, app(HEAD_TIMEOUT_S), TIMEOUT_S, 16, stop_r), daemon=True
    )
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        os.write(stop_w, b"x")
        thread.join(TIMEOUT_S)
        listener.close()
        os.close(stop_r)
        os.close(stop_w)
    assert not thread.is_alive()


@contextmanager
def running_streams() -> Iterator[int]:
    """serve_asyncio behind asyncio.start_server, in a thread, until the test ends."""
    listener = socket.create_server((HOST, 0))
    ready, done = threading.Event(), threading.Event()
    the_app = app(HEAD_TIMEOUT_S)

    async def run(app_: object, request: object) -> object:
        return handle(the_app, request)  # type: ignore[arg-type]

    async def main() -> None:
        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_asyncio(reader, writer, the_app, run, TIMEOUT_S)  # type: ignore[arg-type]

        server = await asyncio.start_server(connected, sock=listener)
        async with server:
            ready.set()
            for _ in range(int(2 * TIMEOUT_S / 0.05)):  # bounded
                if done.is_set():
                    break
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    try:
        assert ready.wait(TIMEOUT_S)
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(TIMEOUT_S)
    assert not thread.is_alive()


def assert_one_408(data: bytes) -> None:
    [(status, headers, _body)] = split_responses(data)
    assert status == 408 and headers["connection"] == "close"


@pytest.mark.parametrize("portable", [False, True] if hasattr(select, "epoll") else [True])
def test_the_reactor_lingers_after_its_408(portable: bool) -> None:
    with running_reactor(portable, app=app(HEAD_TIMEOUT_S)) as (_reactor, port):
        assert_one_408(late_byte_after_the_408(port))


def test_the_inline_loop_lingers_after_its_408() -> None:
    with running_inline() as port:
        assert_one_408(late_byte_after_the_408(port))


def test_the_streams_adapter_lingers_after_its_408() -> None:
    with running_streams() as port:
        assert_one_408(late_byte_after_the_408(port))


def test_the_inline_loop_lingers_after_a_400_too() -> None:
    with running_inline() as port, socket.create_connection((HOST, port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"BROKEN\r\n\r\n")
        [(status, _headers, _body)] = split_responses(late_bytes_after(sock, sock.recv(65536)))
        assert status == 400


def test_a_lingering_connection_holds_no_pool_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # One pool thread and a linger far longer than the other client's patience: a linger that
    # blocked the thread (a bad request, then a client that neither reads nor closes) would
    # leave the good request unanswered.
    monkeypatch.setattr(connection, "LINGER_S", 30.0)
    with (
        running_reactor(False, threads=1) as (_reactor, port),
        socket.create_connection((HOST, port), timeout=TIMEOUT_S) as bad,
    ):
        bad.sendall(b"BROKEN\r\n\r\n")
        assert bad.recv(65536).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection((HOST, port), timeout=3.0) as good:
            good.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            [(status, _headers, _body)] = split_responses(read_to_eof(good))
            assert status == 200


def test_a_client_that_closes_ends_its_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    # One connection at a time and a linger far longer than the next client's patience: the
    # slot must come free when the lingering client closes, not when the linger runs out.
    monkeypatch.setattr(connection, "LINGER_S", 30.0)
    with running_reactor(False, app=App(Work(), Limits(max_connections=1))) as (_reactor, port):
        with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as bad:
            bad.sendall(b"BROKEN\r\n\r\n")
            assert split_responses(read_to_eof(bad))[0][0] == 400
        with socket.create_connection((HOST, port), timeout=5.0) as good:
            good.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert split_responses(read_to_eof(good))[0][0] == 200


class StuckTransport:
    """A transport whose client reads nothing: the response stays in its write buffer."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    def get_extra_info(self, name: str) -> None:
        return None

    def write(self, data: bytes) -> None:
        self.calls.append("write")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def get_write_buffer_size(self) -> int:
        return 1 << 20

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")


def test_a_linger_whose_response_is_still_unsent_ends_in_an_abort() -> None:
    # close() would wait for the write buffer to drain, for ever if the client reads nothing.
    served = Served(4)
    conn = InlineHttp(App(Work(), Limits(head_timeout_s=HEAD_TIMEOUT_S)), served)
    transport = StuckTransport()
    conn.connection_made(transport)
    conn.data_received(b"BROKEN\r\n\r\n")  # a 400, then the linger
    assert transport.calls[-1] == "write_eof" and conn.lingering
    conn.expire(conn.lingering + 1.0, TIMEOUT_S)
    assert transport.calls[-1] == "abort"
