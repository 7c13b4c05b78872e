"""Tests for the production-model strategies: asyncio, reuseport, prefork-accept, thread-per-conn.

Each is driven over TCP like any client would (tests/helpers.py): the HTTP basics every
strategy must get right (GET /, keep-alive reuse, `Connection: close`, a pipelined pair, CPU
work), a stop on SIGTERM that leaves no process behind, and each model's own promise:

- reuseport: connections are spread over more than one worker, and none is stranded in a queue
  nobody accepts from (the parent's listener must not stay in the SO_REUSEPORT group). Which
  worker answered is read from the kernel's socket table (`ss`), not from the response.
- prefork-accept: a keep-alive connection is given up (`Connection: close`) when another
  connection waits, so more clients than workers are all answered.
- thread-per-conn: at most --workers connections are served at once; the next waits for a slot.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import HttpClient, ServerProcess, get, request_bytes, start_server

from harness.server.app import INDEX_BODY, App, Limits
from harness.server.inline_loop import serve_inline
from harness.server.strategy import ServeOptions, StrategyError, discover

NEW = ("asyncio", "reuseport", "prefork-accept", "thread-per-conn")
WORKERS = {"asyncio": None, "reuseport": 2, "prefork-accept": 2, "thread-per-conn": 8}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")


def start(strategy: str, workers: Optional[int] = None) -> ServerProcess:
    return start_server(strategy, workers=workers if workers is not None else WORKERS[strategy])


@pytest.fixture(scope="module", params=NEW)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if request.param == "reuseport" and not sys.platform.startswith("linux"):
        pytest.skip("reuseport is Linux only")
    started = start(request.param)
    yield started
    started.close()


# --------------------------------------------------------------------------- registration (fast)


def test_each_is_a_builtin_under_its_name() -> None:
    registry = discover()
    for name in NEW:
        entry = registry[name]
        assert entry.source == "builtin" and entry.cls is not None and entry.cls.name == name, entry


def test_reuseport_refuses_a_platform_without_balancing(monkeypatch: pytest.MonkeyPatch) -> None:
    strategy = discover()["reuseport"].cls
    assert strategy is not None
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(StrategyError, match="needs Linux"):
        strategy().check_options(ServeOptions())


def test_inline_loop_parks_connections_over_the_cap() -> None:
    """At `Limits.max_connections` a loop leaves further connections unread until one ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop_read, stop_write = os.pipe()
    app = App(limits=Limits(max_connections=1))
    thread = threading.Thread(target=serve_inline, args=(listener, app, 5.0, 16, stop_read), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with HttpClient(port, timeout=5.0) as first, HttpClient(port, timeout=5.0) as second:
            assert first.get("/").status == 200
            second.send(request_bytes("/work?bytes=2"))
            assert not select.select([second.sock], [], [], 0.3)[0], "served past the cap"
            first.close()
            assert len(second.read_response().body) == 2
    finally:
        os.write(stop_write, b"x")
        thread.join(5.0)
        for fd in (stop_read, stop_write):
            os.close(fd)
        listener.close()
    assert not thread.is_alive()


# --------------------------------------------------------------------------- HTTP basics (slow)


@pytest.mark.slow
def test_get_root(server: ServerProcess) -> None:
    response = get(server.port, "/")
    assert (response.status, response.body) == (200, INDEX_BODY)


@pytest.mark.slow
def test_keep_alive_connection_is_reused(server: ServerProcess) -> None:
    with HttpClient(server.port) as client:
        for size in (1, 2, 3):
            response = client.get("/work?bytes=%d" % size)
            assert (response.status, len(response.body)) == (200, size)
            assert response.header("connection") is None  # HTTP/1.1: kept alive


@pytest.mark.slow
def test_connection_close_is_honoured(server: ServerProcess) -> None:
    with HttpClient(server.port) as client:
        response = client.get("/", headers=[("Connection", "close")])
        assert response.status == 200 and response.header("connection") == "close"
        assert client.at_eof()


@pytest.mark.slow
def test_pipelined_pair_answered_in_order(server: ServerProcess) -> None:
    with HttpClient(server.port) as client:
        client.send(request_bytes("/work?bytes=3") + request_bytes("/work?bytes=5"))
        sizes = [len(client.read_response().body) for _ in range(2)]
    assert sizes == [3, 5]


@pytest.mark.slow
def test_cpu_work(server: ServerProcess) -> None:
    response = get(server.port, "/work?cpu_us=1000&bytes=10")
    assert (response.status, len(response.body)) == (200, 10)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", NEW)
def test_sigterm_stops_it_with_no_process_left(strategy: str) -> None:
    if strategy == "reuseport" and not sys.platform.startswith("linux"):
        pytest.skip("reuseport is Linux only")
    server = start(strategy)
    clients: List[HttpClient] = []
    try:
        # Idle keep-alive connections held open across the stop; prefork-accept serves one per
        # worker (an idle client pins its worker: the model's documented cost).
        for _ in range(2 if strategy == "prefork-accept" else 3):
            clients.append(HttpClient(server.port))
            assert clients[-1].get("/work?sleep_ms=5").status == 200
        if strategy in ("reuseport", "prefork-accept"):
            assert len(server.group_pids()) == 1 + WORKERS[strategy]  # type: ignore[operator]
        status, left = server.stop_gracefully()
    finally:
        for client in clients:
            client.close()
        server.close()
    assert status == 0, server.stderr_text()
    assert left == [], "still alive after the server stopped: %s" % left


# --------------------------------------------------------------------------- each model's promise


def _sockets(state: str, port: int) -> List[Tuple[int, Set[int]]]:
    """(peer port, pids holding it) for each TCP socket on local `port` in `state`, from `ss`:
    netlink with the filter applied in the kernel, where psutil would read all of /proc/net/tcp
    (seconds per call on a machine full of TIME_WAIT sockets)."""
    filter_ = "( sport = :%d )" % port
    out = subprocess.run(["ss", "-Htnp", "state", state, filter_], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    found = []
    for line in out.stdout.splitlines():
        fields = line.split()
        peer = fields[3].rsplit(":", 1)[1]
        found.append((int(peer) if peer.isdigit() else 0, {int(pid) for pid in re.findall(r"pid=(\d+)", line)}))
    return found


def _listening_pids(port: int) -> Set[int]:
    return {pid for _peer, pids in _sockets("listening", port) for pid in pids}


needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see which worker answered")


@pytest.mark.slow
@linux_only
@needs_ss
def test_reuseport_spreads_connections_and_strands_none() -> None:
    server = start("reuseport", workers=3)
    try:
        # Each worker has its own listener; the parent keeps none in the group (once they are up).
        workers = _listening_pids(server.port)
        for _ in range(100):  # bounded: 10 s
            if server.pid not in workers and len(workers) == 3:
                break
            time.sleep(0.1)
            workers = _listening_pids(server.port)
        assert server.pid not in workers and len(workers) == 3, workers
        clients: List[HttpClient] = []
        try:
            for _ in range(24):  # sequential: each must be accepted by whoever owns its queue
                clients.append(HttpClient(server.port, timeout=5.0))
                assert clients[-1].get("/").status == 200
            owners = dict(_sockets("established", server.port))  # connections kept open to be seen
            answered = set().union(*(owners[client.sock.getsockname()[1]] for client in clients))
        finally:
            for client in clients:
                client.close()
        assert answered <= workers and len(answered) > 1, answered
    finally:
        server.close()


@pytest.mark.slow
def test_prefork_accept_gives_up_keep_alive_when_another_connection_waits() -> None:
    server = start("prefork-accept", workers=2)
    try:
        with HttpClient(server.port) as first:
            assert first.get("/").header("connection") is None  # nobody waiting: kept alive
            second = HttpClient(server.port)
            with second:
                assert second.get("/").header("connection") is None  # now one worker is pinned to each
                with HttpClient(server.port) as third:  # queued: no worker is free
                    third.send(request_bytes("/work?bytes=7"))
                    response = first.get("/")
                    assert response.status == 200 and response.header("connection") == "close"
                    assert first.at_eof()
                    assert len(third.read_response().body) == 7  # the freed worker took it
    finally:
        server.close()


@pytest.mark.slow
def test_thread_per_conn_serves_at_most_workers_connections() -> None:
    server = start("thread-per-conn", workers=2)
    try:
        first, second = HttpClient(server.port), HttpClient(server.port)
        with first, second, HttpClient(server.port) as third:
            for client in (first, second):
                assert client.get("/").status == 200
            third.send(request_bytes("/work?bytes=4"))
            assert not select.select([third.sock], [], [], 0.5)[0], "a third connection was served at the cap"
            first.close()
            assert len(third.read_response().body) == 4
    finally:
        server.close()
