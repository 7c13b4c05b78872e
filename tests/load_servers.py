"""Test servers for the load engines' timing behaviour, each in its own (spawned) process.

`TimedServer` answers every request after `sleep_ms` (read from the request's query, as the
harness's `/work` handler does), and, when started with a stall, holds *every* answer while
`time.monotonic() % period_s < stall_s` -- as if all its workers waited on one lock held
stall_s of every period_s -- releasing them at the end of the stall. time.monotonic() is
system-wide on Linux, so a test can align its measurement window with the stalls.

A separate process, so that the server never competes with the client for the GIL; every wait
is bounded (the process ends after LIFETIME_S whatever happens; the fixture terminates it).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LIFETIME_S = 120.0
READY_TIMEOUT_S = 30.0
_SLEEP = re.compile(rb"sleep_ms=([0-9.]+)")
_BODY = b"x" * 16


def _response(close: bool) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(_BODY),
        b"Connection: close\r\n" if close else b"",
        _BODY,
    )


class _Timed(asyncio.Protocol):
    def __init__(self, stall_s: float, period_s: float) -> None:
        self.stall_s = stall_s
        self.period_s = period_s
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        for _ in range(1000):
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end], buffer[end + 4 :]
            match = _SLEEP.search(head)
            delay = float(match.group(1)) / 1000.0 if match else 0.0
            delay += self._stall_left(time.monotonic())
            answer = _response(close=b"Connection: close" in head)
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._answer, answer)
            else:
                self._answer(answer)
        self.buffer = buffer

    def _stall_left(self, now: float) -> float:
        if self.period_s <= 0:
            return 0.0
        phase = now % self.period_s
        return self.stall_s - phase if phase < self.stall_s else 0.0

    def _answer(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            if b"Connection: close" in answer:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _serve(ports: Any, stall_s: float, period_s: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Timed(stall_s, period_s), "127.0.0.1", 0, backlog=1024)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(LIFETIME_S)

    try:  # the fastest loop available: a benchmark against this server should measure the client
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


def _port(ports: Any, server: Any) -> int:
    """The port the server reports, or an error as soon as it has died (bounded either way)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return int(ports.get(timeout=0.2))
        except queue.Empty:
            if not server.is_alive():
                raise RuntimeError("the test server exited (status %s) before it was ready" % server.exitcode) from None
    raise RuntimeError("the test server was not ready within %g s" % READY_TIMEOUT_S)


@contextmanager
def timed_server(stall_s: float = 0.0, period_s: float = 0.0) -> Iterator[int]:
    """Start a TimedServer; yields its port on 127.0.0.1; stops it (bounded) on exit."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=_serve, args=(ports, stall_s, period_s), daemon=True)
    server.start()
    try:
        yield _port(ports, server)
    finally:
        server.terminate()
        server.join(5)
        if server.is_alive():
            server.kill()
            server.join(5)
