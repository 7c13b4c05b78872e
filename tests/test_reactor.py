"""The reactor in-process, over loopback, with each poller: clients that ask again at once or
pipeline are answered in order; one that floods cannot keep the only pool thread from another
connection; a response larger than the socket buffers leaves the connection usable; waiting
connections still get the 408 and the idle close; connections that come and go leave nothing;
and forensics sees a reactor that waits for work as idle, not stuck.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, List, Optional, Tuple

import pytest
from helpers import HOST, HttpClient, request_bytes

from harness.server.app import App, Limits, Work
from harness.server.reactor import READS_PER_TURN, Reactor
from harness.supervise.diagnosis import summarize_processes
from harness.supervise.dumps import Frame, ProcessDump, ThreadDump
from strategies.threads import accept_ready

TIMEOUT_S = 10.0
# The flood outlasts the other client's patience, which is generous: served in turn, it is
# answered within milliseconds; behind reads without a bound, it waits for seconds.
PATIENCE_S = 3.0
FLOOD_S = 2 * TIMEOUT_S
KINDS = ["epoll", "portable"] if hasattr(select, "epoll") else ["portable"]


@contextmanager
def running(
    portable: bool, threads: int = 2, app: Optional[App] = None, idle_timeout_s: float = TIMEOUT_S
) -> Iterator[Tuple[Reactor, int]]:
    """A Reactor serving a fresh loopback listener in a thread, and its port; stopped through its stop fd."""
    listener = socket.create_server((HOST, 0))
    listener.setblocking(False)
    stop_r, stop_w = os.pipe()
    reactor = Reactor(
        app or App(),
        threads,
        idle_timeout_s=idle_timeout_s,
        io_timeout_s=TIMEOUT_S,
        stop_fd=stop_r,
        portable=portable,
    )
    reactor.add_source(listener, lambda: accept_ready(listener))
    thread = threading.Thread(target=reactor.run, name="test-reactor", daemon=True)
    thread.start()
    try:
        yield reactor, listener.getsockname()[1]
    finally:
        os.write(stop_w, b"x")
        thread.join(TIMEOUT_S)
        reactor.close()
        listener.close()
        os.close(stop_r)
        os.close(stop_w)
    assert not thread.is_alive()


def settled(reactor: Reactor) -> int:
    """The reactor's connection count once the closes the clients have seen are counted (bounded wait)."""
    for _ in range(200):
        if reactor.connections == 0:
            break
        time.sleep(0.01)
    return reactor.connections


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_that_asks_again_at_once_is_answered_every_time(kind: str) -> None:
    with running(kind == "portable") as (_, port), HttpClient(port, timeout=TIMEOUT_S) as client:
        for n in range(200):
            response = client.get("/work?bytes=%d" % (n % 7))
            assert response.status == 200 and response.body == b"x" * (n % 7)


@pytest.mark.parametrize("kind", KINDS)
def test_pipelined_requests_are_answered_in_order(kind: str) -> None:
    with running(kind == "portable") as (_, port), HttpClient(port, timeout=TIMEOUT_S) as client:
        count = 4 * READS_PER_TURN + 3
        client.send(b"".join(request_bytes("/work?bytes=%d" % n) for n in range(count)))
        bodies = [client.read_response().body for _ in range(count)]
        assert bodies == [b"x" * n for n in range(count)]
        assert client.get("/").status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_a_flooding_connection_does_not_starve_another_with_one_pool_thread(kind: str) -> None:
    with running(kind == "portable", threads=1) as (_, port):
        flood = socket.create_connection((HOST, port), timeout=TIMEOUT_S)
        done = threading.Event()
        answered: List[int] = [0]

        def write() -> None:
            batch = request_bytes("/") * 2048  # more than one read takes: full reads, back to back
            deadline = time.monotonic() + FLOOD_S
            while not done.is_set() and time.monotonic() < deadline:  # bounded by time
                try:
                    flood.sendall(batch)
                except OSError:
                    return

        def read() -> None:
            deadline = time.monotonic() + FLOOD_S
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    chunk = flood.recv(1 << 16)
                except OSError:
                    return
                if not chunk:
                    return
                answered[0] += chunk.count(b"HTTP/1.1 200 ")

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(1000):  # bounded: until the flood is being served
                if answered[0] > 4 * READS_PER_TURN:
                    break
                time.sleep(0.005)
            with HttpClient(port, timeout=PATIENCE_S) as other:
                response = other.get("/work?bytes=3")
            assert response.status == 200 and response.body == b"xxx"
            assert answered[0] > 0
        finally:
            done.set()
            try:
                flood.shutdown(socket.SHUT_RDWR)  # wakes a sendall or recv blocked on it
            except OSError:
                pass
            flood.close()
            for thread in threads:
                thread.join(TIMEOUT_S)


@pytest.mark.parametrize("kind", KINDS)
def test_a_response_larger_than_the_buffers_leaves_the_connection_usable(kind: str) -> None:
    with running(kind == "portable") as (_, port), HttpClient(port, timeout=TIMEOUT_S) as client:
        big = client.get("/work?bytes=%d" % (8 << 20))
        assert big.status == 200 and len(big.body) == 8 << 20
        assert client.get("/work?bytes=2").body == b"xx"


@pytest.mark.parametrize("kind", KINDS)
def test_waiting_connections_get_the_408_and_the_idle_close(kind: str) -> None:
    app = App(Work(), Limits(head_timeout_s=0.3))
    with running(kind == "portable", app=app, idle_timeout_s=0.5) as (reactor, port):
        with HttpClient(port) as slow, HttpClient(port) as idle:
            assert idle.get("/").status == 200
            slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            response = slow.read_response()
            assert response.status == 408 and response.header("connection") == "close"
            assert slow.at_eof()
            assert idle.at_eof()  # closed by the sweep once idle for 0.5 s
        assert settled(reactor) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_connections_that_come_and_go_leave_nothing_behind(kind: str) -> None:
    with running(kind == "portable") as (reactor, port):
        for n in range(60):
            with HttpClient(port) as client:
                if n % 2:
                    response = client.get("/", headers=[("Connection", "close")])
                    assert response.status == 200 and client.at_eof()
                else:
                    assert client.get("/").status == 200  # then the client closes first
        assert settled(reactor) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_reactor_waiting_for_work_is_diagnosed_idle(kind: str) -> None:
    """Forensics must not mistake the selector thread or pool threads waiting for work for stuck ones."""
    with running(kind == "portable", threads=3) as (_, port):
        with HttpClient(port) as client:
            assert client.get("/").status == 200  # every thread has started and gone back to waiting
        time.sleep(0.1)
        frames = sys._current_frames()
        ours = [t for t in threading.enumerate() if t.name.startswith(("hangbench-worker", "test-reactor"))]
        threads = tuple(ThreadDump(t.ident, t.name, stack_of(frames[t.ident])) for t in ours if t.ident in frames)
        assert len(threads) == 4
        dump = ProcessDump(os.getpid(), "python", "S", None, "py-spy", threads, (), ())
        assert summarize_processes([dump]).startswith("idle: 4/4 threads waiting for work")


def stack_of(frame: Optional[FrameType]) -> Tuple[Frame, ...]:
    """A live Python stack as forensics records it: innermost frame first."""
    out: List[Frame] = []
    for _ in range(200):  # bounded by any sane stack depth
        if frame is None:
            break
        out.append(Frame(frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return tuple(out)
