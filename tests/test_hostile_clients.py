"""Hostile clients against real servers: pipelining hogs, clients that leave mid-work, slowloris,
and more connections than a strategy's cap.

Each test starts a real server process (`start_server`) and plays the client over loopback with
a timeout on every socket operation. Time is measured and reported in the assertion messages,
but the only bounds asserted are generous ones (ten times or more what a fixed server needs),
far from both a fixed server's figure and a broken one's.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable, List, Tuple

import psutil
import pytest
from helpers import HOST, HttpClient, HttpResponse, NoResponse, ServerProcess, get, request_bytes

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., ServerProcess]
LIMITS_PLUGIN = str(Path(__file__).resolve().parent / "hostile" / "limits_plugin.py")
SHORT_HEAD_TIMEOUT_S = 1.0  # limits_plugin.SHORT_HEAD_TIMEOUT_S
SMALL_CAP = 4  # limits_plugin.SMALL_CAP
MIB = 1 << 20
GENEROUS_S = 10.0


def timed_get(port: int, target: str = "/", timeout: float = GENEROUS_S) -> Tuple[HttpResponse, float]:
    start = time.monotonic()
    response = get(port, target, timeout=timeout)
    return response, time.monotonic() - start


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


# --------------------------------------------------------------------------- pipelining hog


@pytest.mark.parametrize("strategy", ["threads", "gevent"])
def test_pipelined_64_mib_responses_never_read_keep_memory_bounded(
    server_factory: ServerFactory, strategy: str
) -> None:
    server = server_factory(strategy, workers=4)
    assert get(server.port, "/").status == 200  # warm: the first request's allocations are not growth
    baseline = rss(server.pid)
    hog = socket.create_connection((HOST, server.port), timeout=GENEROUS_S)
    try:
        # Eight 64 MiB responses asked for in 368 bytes, and never read.
        hog.sendall(request_bytes("/work?bytes=%d" % (64 * MIB)) * 8)
        peak = baseline
        deadline = time.monotonic() + 3.0  # the unfixed server reaches ~1 GB within a second or two
        while time.monotonic() < deadline:
            peak = max(peak, rss(server.pid))
            time.sleep(0.05)
        response, seconds = timed_get(server.port, "/work?bytes=10")
        peak = max(peak, rss(server.pid))
        assert server.proc.poll() is None, "the server died: %s" % server.stderr_text()[-2000:]
        assert response.status == 200 and response.body == b"x" * 10
        growth_mb = (peak - baseline) / MIB
        assert growth_mb < 256, "RSS grew by %.0f MB (normal GET took %.3f s)" % (growth_mb, seconds)
    finally:
        hog.close()


# --------------------------------------------------------------------------- clients that leave


def test_work_pipelined_by_clients_that_left_is_abandoned(server_factory: ServerFactory) -> None:
    # Four pool threads; eight clients each pipeline two 20 s sleeps and leave at once. Served
    # to the end, that would keep every thread busy for 80 s.
    server = server_factory("threads", workers=4)
    clients: List[socket.socket] = []
    for _ in range(8):
        sock = socket.create_connection((HOST, server.port), timeout=GENEROUS_S)
        sock.sendall(request_bytes("/work?sleep_ms=20000") * 2)
        clients.append(sock)
    time.sleep(0.3)  # let the server read the requests and start the sleeps
    for sock in clients:
        sock.close()
    response, seconds = timed_get(server.port, "/work?bytes=3")
    assert response.status == 200 and response.body == b"xxx", "took %.2f s" % seconds


# --------------------------------------------------------------------------- slowloris


def open_slow_connections(port: int, count: int) -> List[socket.socket]:
    """`count` connections that each sent part of a request head and then nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=GENEROUS_S)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        socks.append(sock)
    return socks


def read_all(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):  # bounded; each round adds bytes or ends
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError("too much data")


def test_200_slow_heads_do_not_stop_a_normal_get_and_are_cut_with_408(server_factory: ServerFactory) -> None:
    server = server_factory(LIMITS_PLUGIN + ":ThreadsShortHead", workers=4)
    slow = open_slow_connections(server.port, 200)
    try:
        response, seconds = timed_get(server.port, "/work?bytes=4")
        assert response.status == 200 and response.body == b"xxxx", "took %.2f s" % seconds
        # Each slow connection is cut about SHORT_HEAD_TIMEOUT_S after its accept, with a 408.
        for sock in slow:
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            assert b"\r\nConnection: close\r\n" in answer
    finally:
        for sock in slow:
            sock.close()


@pytest.mark.parametrize("strategy", ["ThreadsShortHead", "GeventShortHead"])
def test_slow_head_is_cut_after_the_deadline(server_factory: ServerFactory, strategy: str) -> None:
    server = server_factory(LIMITS_PLUGIN + ":" + strategy, workers=4)
    with HttpClient(server.port) as silent, HttpClient(server.port) as trickling:
        assert trickling.get("/").status == 200  # a keep-alive connection; its next head is slow
        start = time.monotonic()
        trickling.send(b"GET / HTTP/1.1\r\n")
        for _ in range(100):  # one header byte every 0.1 s (bounded), never the end of the head
            try:
                trickling.send(b"X")
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - start > 5 * SHORT_HEAD_TIMEOUT_S:
                break
        response = trickling.read_response()
        assert response.status == 408 and response.header("connection") == "close"
        assert trickling.at_eof()
        assert silent.at_eof()  # nothing sent at all: closed without a word
    assert get(server.port, "/").status == 200


# --------------------------------------------------------------------------- connection cap


def test_connections_past_the_cap_wait_in_the_backlog_until_one_closes(server_factory: ServerFactory) -> None:
    server = server_factory(LIMITS_PLUGIN + ":ThreadsSmallCap", workers=2)
    held = [HttpClient(server.port) for _ in range(SMALL_CAP)]
    try:
        for client in held:
            assert client.get("/").status == 200  # served, and kept alive
        with HttpClient(server.port, timeout=1.0) as waiting:  # the connect itself succeeds (backlog)
            waiting.send(request_bytes("/work?bytes=2"))
            with pytest.raises((socket.timeout, NoResponse)):
                waiting.read_response()  # not served while the cap is reached
            held.pop().close()
            waiting.sock.settimeout(GENEROUS_S)
            response = waiting.read_response()
            assert response.status == 200 and response.body == b"xx"
    finally:
        for client in held:
            client.close()
