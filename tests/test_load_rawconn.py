"""The asyncio engine's `Connection: close` path (harness.load.rawconn): raw non-blocking
sockets in one epoll set instead of a task, transport and protocol per request. Every outcome
kind and the per-request timeline (milestones, the client port read only for a failed
request) must be what the transport path gives; a request longer than the socket buffers is
sent in parts; nothing is left open. Real sockets on 127.0.0.1, each run under a second.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Iterator

import pytest
from test_load_engines import ScriptedServer, closed_port, only, workload

from harness.load import rawconn, run_load, slots

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not rawconn.available(), reason="the raw path needs epoll (Linux)"),
]


@pytest.fixture
def raw_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if a close-mode connection is made the transport way."""

    async def no_task(self: object, conn: object) -> None:
        raise AssertionError("close mode made a connection with loop.create_connection")

    monkeypatch.setattr(slots.Slot, "connect", no_task)
    yield


def test_close_mode_takes_the_raw_path(raw_only: None) -> None:
    with ScriptedServer("ok") as server:
        result = run_load(workload(server.port, "asyncio", connection="close", duration_s=0.2))
    only(result, "ok")


@pytest.mark.parametrize(
    "behaviour, kind",
    [("reset", "reset"), ("close-early", "closed"), ("garbage", "malformed"), ("status-500", "http_error")],
)
def test_failures_keep_their_kind_milestones_and_client_port(raw_only: None, behaviour: str, kind: str) -> None:
    with ScriptedServer(behaviour) as server:
        result = run_load(workload(server.port, "asyncio", connection="close", duration_s=0.2, timelines=3))
    only(result, kind)
    assert len(result.timelines) == 3
    for timeline in result.timelines:
        assert timeline["outcome"] == kind
        # Read lazily, while the socket was still open: a real port, not None.
        assert isinstance(timeline["port"], int) and timeline["port"] > 0, timeline
        assert list(timeline["milestones"])[:3] == ["connect_start", "connected", "request_written"], timeline


def test_a_connect_that_never_completes_has_no_port(raw_only: None) -> None:
    # Backlog 0 and no accept(): after the first connections fill the queue, SYNs are dropped.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        result = run_load(workload(port, "asyncio", concurrency=4, duration_s=0.3, deadline_s=0.2, timelines=50))
    only(result, "hang")
    stuck = [t for t in result.timelines if t["last"] == "connect not completed"]
    assert stuck, result.timelines
    assert all(t["port"] is None and list(t["milestones"]) == ["connect_start"] for t in stuck), stuck


def test_refused_everywhere_does_not_recurse(raw_only: None) -> None:
    # A refusal is found inside the connect or the first send; reported from the next loop
    # iteration, so a slot does not call itself once per refusal.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        result = run_load(workload(closed_port(), "asyncio", concurrency=2, duration_s=0.2))
    finally:
        sys.setrecursionlimit(limit)
    only(result, "refused")
    assert result.counts["refused"] > 200  # more refusals than the recursion limit allows frames
    assert result.error_detail.get("ECONNREFUSED") == result.counts["refused"]


class _SlowReader:
    """Answers 200 once it has read a whole (long) request, after a pause that fills buffers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.got = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            time.sleep(0.2)  # the client's first send fills the buffers and returns short
            data = b""
            while b"\r\n\r\n" not in data[-4096:]:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                data += chunk
            self.got = len(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def test_a_request_longer_than_the_buffers_is_sent_in_parts(raw_only: None) -> None:
    server = _SlowReader()
    server.thread.start()
    try:
        long_path = "/" + "a" * (16 << 20)  # far beyond any loopback socket buffer
        result = run_load(
            workload(server.port, "asyncio", concurrency=1, requests=1, duration_s=None, deadline_s=5.0, path=long_path)
        )
    finally:
        server.thread.join(timeout=10)
        server.listener.close()
    only(result, "ok")
    assert server.got > 16 << 20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
def test_nothing_is_left_open() -> None:
    before = len(os.listdir("/proc/self/fd"))
    with ScriptedServer("silent") as server:
        result = run_load(workload(server.port, "asyncio", concurrency=8, duration_s=0.3, deadline_s=0.1))
    assert result.counts["hang"] > 0
    with ScriptedServer("ok") as server:
        run_load(workload(server.port, "asyncio", concurrency=8, duration_s=0.2))
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_socket_that_stays_readable_cannot_hold_the_loop() -> None:
    # A server streaming faster than the client reads never lets recv say EAGAIN: one
    # readiness may read only MAX_READS_PER_READY chunks, then the connection goes back to the
    # loop's queue (call_soon), so the ticker and the other connections get their turns.
    class Endless:
        reads = 0

        def recv(self, size: int) -> bytes:
            self.reads += 1
            return b"x" * 16

    class Loop:
        def __init__(self) -> None:
            self.soon: list[object] = []

        def call_soon(self, callback: object, *args: object) -> None:
            self.soon.append(callback)

    class Sink:
        def on_data(self, conn: object, data: bytes) -> None:
            pass

    loop, sock = Loop(), Endless()
    poller = object.__new__(rawconn.Poller)
    poller.loop = loop  # type: ignore[assignment]
    conn = rawconn.RawConn(Sink(), poller)  # type: ignore[arg-type]
    conn.sock, conn.connected = sock, True  # type: ignore[assignment]
    conn.ready()
    assert sock.reads == rawconn.MAX_READS_PER_READY <= 64
    assert loop.soon == [conn.ready] and not conn.busy and not conn.closing
