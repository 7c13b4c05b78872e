"""Every built-in strategy over real sockets on 127.0.0.1, as a separate server process.

The sound strategies (threads, gevent, scm-rights, asyncio-executor) must behave as an ordinary
HTTP/1.1 server: concurrent keep-alive clients, pipelining, Connection: close, a malformed
request answered with 400 while the server goes on serving, /work doing what it is asked, and a
stop that leaves no process behind.

The broken ones are tested for what they really do on Linux, which is the point of keeping them:
`pool-socket` answers, but its close waits for the next client (the lingering reference);
`pool-fromfd` never answers at all, and its workers report EBADF or ENOTSOCK.

Every socket operation has a timeout and every server is stopped (SIGTERM, then SIGKILL of its
process group) whatever a test does, so a hang fails one test in bounded time.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Tuple

import pytest
from helpers import HttpClient, NoResponse, ServerProcess, get, request_bytes, start_server

START_METHODS = ("fork", "spawn", "forkserver")
SOUND: List[Tuple[str, str]] = [("threads", "fork"), ("gevent", "fork")]
SOUND += [("scm-rights", method) for method in START_METHODS]
SOUND += [("asyncio-executor", method) for method in START_METHODS]
SOUND_IDS = ["%s-%s" % pair if pair[0] not in ("threads", "gevent") else pair[0] for pair in SOUND]
WORKERS = 2
# gevent's --workers is the size of its greenlet pool, one greenlet per *connection*: with 2 the
# third keep-alive client would wait for an idle one to time out. Small, but not that small.
WORKERS_FOR = {"gevent": 16}
HANG_TIMEOUT_S = 1.5  # how long a client waits before we call it a hang (the brief's bound)

pytestmark = pytest.mark.slow


def start(strategy: str, start_method: str = "fork", *args: str) -> ServerProcess:
    return start_server(strategy, "--start-method", start_method, *args, workers=WORKERS_FOR.get(strategy, WORKERS))


@pytest.fixture(scope="module", params=SOUND, ids=SOUND_IDS)
def sound(request: pytest.FixtureRequest):
    """One server per sound strategy and start method, shared by the behaviour tests."""
    server = start(*request.param)
    yield server
    server.close()


# --------------------------------------------------------------------------- sound strategies


def test_concurrent_keep_alive_clients(sound: ServerProcess) -> None:
    def client(index: int) -> List[bytes]:
        with HttpClient(sound.port) as conn:
            bodies = []
            for round_ in range(5):
                response = conn.get("/work?sleep_ms=2&bytes=%d" % (index * 10 + round_))
                assert response.status == 200
                assert response.header("connection") is None  # kept alive
                bodies.append(response.body)
            return bodies

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(client, range(6), timeout=60))
    for index, bodies in enumerate(results):
        assert bodies == [b"x" * (index * 10 + r) for r in range(5)]


def test_pipelined_requests_answered_in_order(sound: ServerProcess) -> None:
    sizes = [5, 1, 300, 0, 42]
    with HttpClient(sound.port) as conn:
        conn.send(b"".join(request_bytes("/work?bytes=%d" % n) for n in sizes))
        assert [conn.read_response().body for _ in sizes] == [b"x" * n for n in sizes]
        assert conn.get("/").status == 200  # and the connection is still usable


def test_connection_close_is_honoured(sound: ServerProcess) -> None:
    with HttpClient(sound.port) as conn:
        assert conn.get("/", [("Connection", "keep-alive")]).status == 200
        response = conn.get("/work?bytes=3", [("Connection", "close")])
        assert response.status == 200 and response.body == b"xxx"
        assert response.header("connection") == "close"
        assert conn.at_eof()


def test_http10_closes_by_default(sound: ServerProcess) -> None:
    with HttpClient(sound.port) as conn:
        conn.send(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.read_response().header("connection") == "close"
        assert conn.at_eof()


@pytest.mark.parametrize(
    "garbage, status",
    [
        (b"GARBAGE\x00\x01\r\n\r\n", 400),
        (bytes.fromhex("1603010200010001fc0303") + bytes(40), 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ],
    ids=["binary", "tls", "http-9.9", "chunked"],
)
def test_malformed_request_gets_an_error_and_the_server_goes_on(
    sound: ServerProcess, garbage: bytes, status: int
) -> None:
    with HttpClient(sound.port) as conn:
        assert conn.get("/").status == 200
        conn.send(garbage)
        response = conn.read_response()
        assert response.status == status
        assert response.header("connection") == "close"
        assert conn.at_eof()
    assert get(sound.port, "/work?bytes=9").body == b"x" * 9


def test_work_returns_the_asked_body(sound: ServerProcess) -> None:
    with HttpClient(sound.port) as conn:
        response = conn.get("/work?cpu_us=2000&sleep_ms=5&bytes=100000")
        assert response.status == 200 and response.body == b"x" * 100000
        head = conn.get("/work?bytes=777", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.header("content-length") == "777"
        assert conn.get("/work?bytes=-1").status == 400
        assert conn.get("/nowhere").status == 404
        assert conn.get("/", method="DELETE").status == 405
        assert conn.get("/work?bytes=1").body == b"x"  # errors from the app keep the connection


def test_request_with_body(sound: ServerProcess) -> None:
    with HttpClient(sound.port) as conn:
        conn.send(
            b"POST /work?bytes=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
            + request_bytes("/work?bytes=3")
        )
        assert [conn.read_response().body for _ in range(2)] == [b"xx", b"xxx"]


@pytest.mark.parametrize("strategy, start_method", SOUND, ids=SOUND_IDS)
def test_stop_leaves_no_process_behind(strategy: str, start_method: str) -> None:
    server = start(strategy, start_method)
    try:
        clients = [HttpClient(server.port) for _ in range(4)]
        try:
            for client in clients:  # some work on every worker, and idle keep-alives held open
                assert client.get("/work?sleep_ms=20").status == 200
            members = server.group_pids()
            if strategy in ("scm-rights", "asyncio-executor"):
                assert len(members) > 1, "expected worker processes in the group"
            status, left = server.stop_gracefully()
        finally:
            for client in clients:
                client.close()
        assert status == 0, server.stderr_text()
        assert left == [], "still alive after the server stopped: %s" % left
    finally:
        server.close()


# --------------------------------------------------------------------------- pool-socket


def test_pool_socket_answers_a_client_that_reads_by_content_length() -> None:
    server = start("pool-socket")
    try:
        with HttpClient(server.port) as conn:
            response = conn.get("/work?bytes=5", [("Connection", "close")])
            assert response.status == 200 and response.body == b"xxxxx"
            assert response.header("connection") == "close"
        # keep-alive works too, as long as the client never waits for the close
        with HttpClient(server.port) as conn:
            assert [conn.get("/work?bytes=%d" % n).body for n in (1, 2)] == [b"x", b"xx"]
    finally:
        server.close()


def test_pool_socket_close_waits_for_the_next_client() -> None:
    """The parent's `clientsocket` keeps each connection open until the next accept()."""
    server = start("pool-socket")
    try:
        with HttpClient(server.port, timeout=HANG_TIMEOUT_S) as first:
            first.send(request_bytes("/", [("Connection", "close")]))
            assert first.read_response().status == 200
            # The worker has closed its copy, but the server's FIN does not come ...
            with pytest.raises(socket.timeout):
                first.read_until_eof()
            # ... until another client connects and the parent's accept() rebinds `clientsocket`.
            with HttpClient(server.port) as second:
                first.sock.settimeout(10.0)
                assert first.read_until_eof() == b""
                assert second.get("/", [("Connection", "close")]).status == 200
    finally:
        server.close()


def test_pool_socket_stops_on_sigterm_to_its_process_group() -> None:
    server = start("pool-socket")
    try:
        assert get(server.port, "/").status == 200
        status, _left = server.stop_gracefully(timeout=10.0, group=True)
        assert status == 0
    finally:
        server.close()


# --------------------------------------------------------------------------- pool-fromfd


def recv_or_error(sock: socket.socket) -> str:
    """What the client sees next: 'data', 'eof', 'reset' or 'timeout'."""
    try:
        return "data" if sock.recv(65536) else "eof"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"


@pytest.mark.parametrize("start_method", START_METHODS)
def test_pool_fromfd_never_answers(start_method: str) -> None:
    server = start("pool-fromfd", start_method)
    try:
        first = HttpClient(server.port, timeout=HANG_TIMEOUT_S)
        try:
            first.send(request_bytes("/", [("Connection", "close")]))
            seen = [recv_or_error(first.sock)]  # nothing: the worker failed, the parent holds the socket
            with HttpClient(server.port, timeout=HANG_TIMEOUT_S):
                first.sock.settimeout(10.0)
                seen.append(recv_or_error(first.sock))  # the next accept() dropped it unread: reset
        finally:
            first.close()
        assert seen[0] in ("timeout", "reset", "eof"), seen
        assert seen[1] in ("reset", "eof"), seen
        log = server.wait_for_stderr(["Bad file descriptor", "non-socket"])
        assert "Bad file descriptor" in log or "Socket operation on non-socket" in log, log
        assert "pool task failed" in log, log  # the parent's error_callback saw it
    finally:
        server.close()


def test_pool_fromfd_keeps_accepting_after_failures() -> None:
    server = start("pool-fromfd")
    try:
        for _ in range(3):
            with HttpClient(server.port, timeout=0.5) as conn:
                conn.send(request_bytes("/"))
                with pytest.raises((socket.timeout, ConnectionResetError, NoResponse)):
                    conn.read_response()
        time.sleep(0.2)
        assert server.proc.poll() is None  # failures come back through the pool; the server runs on
    finally:
        server.close()


# --------------------------------------------------------------------------- every built-in: the base's lifecycle

BUILTIN_NAMES = ["threads", "gevent", "scm-rights", "asyncio-executor", "pool-socket", "pool-fromfd"]


def wait_for_workers(server: ServerProcess, count: int) -> List[int]:
    """The server's worker pids once `count` of them are up (bounded), else what there is."""
    workers: List[int] = []
    for _ in range(200):
        workers = [pid for pid in server.group_pids() if pid != server.pid]
        if len(workers) >= count:
            break
        time.sleep(0.05)
    return workers


@pytest.mark.parametrize("strategy", BUILTIN_NAMES)
def test_sigterm_to_the_server_alone_stops_it_and_its_workers(strategy: str) -> None:
    """The stop flag (or, for the article's two, ServerStop) ends every built-in, workers included,
    with a client connected; `stop_gracefully` bounds how long that may take."""
    server = start(strategy)
    try:
        wait_for_workers(server, WORKERS if strategy in ("scm-rights", "asyncio-executor", "pool-socket") else 0)
        with HttpClient(server.port, timeout=HANG_TIMEOUT_S) as client:
            client.send(request_bytes("/work?bytes=3"))
            time.sleep(0.1)  # let the server take the connection before it is asked to stop
            status, left = server.stop_gracefully()
        assert status == 0, server.stderr_text()
        assert left == [], "still alive after the server stopped: %s" % left
        assert "Traceback" not in server.stderr_text()
    finally:
        server.close()


@pytest.mark.parametrize("strategy", ["scm-rights", "asyncio-executor", "pool-socket", "pool-fromfd"])
def test_forked_workers_do_not_hold_the_listener(strategy: str) -> None:
    import psutil

    def listening(pid: int) -> bool:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == server.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
        )

    server = start(strategy, "fork")
    try:
        workers = wait_for_workers(server, WORKERS)
        assert len(workers) >= WORKERS, workers
        assert listening(server.pid)
        assert [pid for pid in workers if listening(pid)] == []
    finally:
        server.close()
