"""Both client engines against small misbehaving loopback servers: every outcome kind, the
naive-client hang (`read=eof` on a connection the server keeps open), stop, progress, and
several client processes. Real sockets on 127.0.0.1; every run lasts well under a second.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from harness.load import Progress, Workload, run_load
from harness.load.metrics import OUTCOMES

pytestmark = pytest.mark.timeout(60)

ENGINES = ["asyncio", "threads"]
BODY = b"hello, hangbench\n"


def response(status: int = 200, close: bool = False, body: bytes = BODY) -> bytes:
    head = "HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        len(body),
        "Connection: close\r\n" if close else "",
    )
    return head.encode() + body


class ScriptedServer:
    """A loopback HTTP server that behaves as told, one thread per connection.

    Behaviours: ok, keep-open (answers, never closes), status-500, reset (RST after the
    request), close-early (half a response, then close), silent (never answers), garbage.
    Everything is bounded: socket timeouts, a stop event, joins with timeouts.
    """

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def __enter__(self) -> ScriptedServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self.threads):
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self.lock:
                self.connections.append(conn)
                self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            for _ in range(100_000):
                head = self._read_head(conn)
                if head is None or not self._answer(conn, b"connection: close" in head.lower()):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def _read_head(self, conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data and not self.stop.is_set():
            chunk = conn.recv(4096)
            if not chunk or len(data) > 65536:
                return None
            data += chunk
        return data

    def _answer(self, conn: socket.socket, close: bool) -> bool:
        """Answer one request; False ends the connection."""
        b = self.behaviour
        if b in ("ok", "status-500"):
            conn.sendall(response(200 if b == "ok" else 500, close))
            return not close
        if b == "close-after":  # answers, says so, and closes, whatever the client asked
            conn.sendall(response(200, close=True))
            return False
        if b == "keep-open":
            conn.sendall(response(200))
            return True
        if b == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if b == "close-early":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            return False
        if b == "garbage":
            conn.sendall(b"SSH-2.0-OpenSSH nonsense\r\n\r\n")
            return False
        if b == "silent":
            self.stop.wait(10)
            return False
        raise AssertionError("unknown behaviour %r" % b)


def closed_port() -> int:
    """A loopback port with no listener (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workload(port: int, engine: str, **changes: object) -> Workload:
    values = dict(
        host="127.0.0.1", port=port, engine=engine, concurrency=4, duration_s=0.4, warmup_s=0.0, deadline_s=0.5
    )
    values.update(changes)
    return Workload(**values)  # type: ignore[arg-type]


def only(result, kind: str) -> None:
    assert set(result.counts) == set(OUTCOMES)
    assert result.counts[kind] > 0, result.counts
    assert result.total == result.counts[kind], result.counts


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_ok_server_gives_ok(engine: str, connection: str) -> None:
    with ScriptedServer("ok") as server:
        result = run_load(workload(server.port, engine, connection=connection))
    only(result, "ok")
    assert result.latency_histogram().total_count == result.counts["ok"]
    assert 0 < result.latency_us["p50"] <= result.latency_us["max"] <= 500_000
    assert result.throughput_rps == pytest.approx(result.counts["ok"] / result.elapsed_s)
    assert result.engine == engine and not result.partial
    # Closed loop: a per-second series that adds up, service time = latency, no schedule.
    assert result.load_model == "closed" and result.intended_rate_rps is None and result.schedule_lag_us == {}
    assert result.service_latency_us == result.latency_us
    assert len(result.intervals) >= 1 and sum(i["counts"]["ok"] for i in result.intervals) == result.counts["ok"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "behaviour, kind",
    [("reset", "reset"), ("close-early", "closed"), ("garbage", "malformed"), ("status-500", "http_error")],
)
def test_misbehaving_server_gives_its_kind(engine: str, behaviour: str, kind: str) -> None:
    with ScriptedServer(behaviour) as server:
        result = run_load(workload(server.port, engine, connection="keep-alive"))
    only(result, kind)
    assert result.latency_us["max"] == 0  # latency is recorded for ok outcomes only


@pytest.mark.parametrize("engine", ENGINES)
def test_silent_server_gives_hangs_at_the_deadline(engine: str) -> None:
    started = time.monotonic()
    with ScriptedServer("silent") as server:
        result = run_load(workload(server.port, engine, concurrency=3, duration_s=0.5, deadline_s=0.2))
    only(result, "hang")
    # Each slot hangs back to back: about duration / deadline hangs per slot, never 0.
    assert result.counts["hang"] >= 3
    assert result.hang_rate == 1.0
    # Bounded: duration + deadline, plus generous slack for a busy machine.
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("engine", ENGINES)
def test_server_that_never_accepts_gives_hangs(engine: str) -> None:
    # Backlog 0 and no accept(): the first connections complete into the queue and are never
    # answered; later SYNs are dropped, so their connects never complete. Both are hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        result = run_load(workload(listener.getsockname()[1], engine, concurrency=4, duration_s=0.3, deadline_s=0.2))
    only(result, "hang")


@pytest.mark.parametrize("engine", ENGINES)
def test_keep_alive_client_reconnects_when_the_server_closes(engine: str) -> None:
    with ScriptedServer("close-after") as server:
        result = run_load(workload(server.port, engine, connection="keep-alive"))
    only(result, "ok")
    assert result.counts["ok"] > 4  # more requests than connections the slots started with


@pytest.mark.parametrize("engine", ENGINES)
def test_closed_port_gives_refused(engine: str) -> None:
    result = run_load(workload(closed_port(), engine, duration_s=0.2))
    only(result, "refused")
    assert result.error_detail.get("ECONNREFUSED") == result.counts["refused"]
    assert result.error_rate == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_read_until_eof_hangs_on_a_connection_the_server_keeps_open(engine: str) -> None:
    with ScriptedServer("keep-open") as server:
        naive = run_load(workload(server.port, engine, concurrency=2, read="eof", deadline_s=0.2))
        careful = run_load(workload(server.port, engine, concurrency=2, read="content-length", deadline_s=0.2))
    only(naive, "hang")
    only(careful, "ok")


@pytest.mark.parametrize("engine", ENGINES)
def test_read_until_eof_is_ok_when_the_server_closes(engine: str) -> None:
    with ScriptedServer("ok") as server:
        result = run_load(workload(server.port, engine, read="eof", connection="close"))
    only(result, "ok")


@pytest.mark.parametrize("engine", ENGINES)
def test_requests_mode_counts_exactly_and_discards_warmup(engine: str) -> None:
    with ScriptedServer("ok") as server:
        result = run_load(
            workload(server.port, engine, duration_s=None, requests=37, warmup_s=0.2, connection="keep-alive")
        )
    assert result.counts["ok"] == 37 and result.total == 37
    assert result.elapsed_s > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_event_ends_early_with_a_partial_result(engine: str) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    started = time.monotonic()
    with ScriptedServer("ok") as server:
        timer.start()
        try:
            result = run_load(workload(server.port, engine, duration_s=30.0, warmup_s=0.1), stop=stop)
        finally:
            timer.cancel()
    assert result.partial
    assert result.counts["ok"] > 0
    assert result.elapsed_s < 30
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("engine", ENGINES)
def test_progress_reports_phases_with_all_counts(engine: str) -> None:
    seen: list[Progress] = []
    with ScriptedServer("ok") as server:
        run_load(
            workload(server.port, engine, duration_s=0.8, warmup_s=0.5, connection="keep-alive"), progress=seen.append
        )
    assert seen, "no progress report in 1.3 seconds"
    assert {p.phase for p in seen} <= {"warmup", "measure"}
    assert all(set(p.counts) == set(OUTCOMES) for p in seen)
    assert "measure" in {p.phase for p in seen}


def test_two_client_processes_merge_into_one_result() -> None:
    with ScriptedServer("ok") as server:
        result = run_load(
            workload(
                server.port,
                "asyncio",
                concurrency=4,
                client_procs=2,
                duration_s=None,
                requests=60,
                connection="keep-alive",
            )
        )
    assert result.client_procs == 2
    assert result.counts["ok"] == 60 and result.total == 60
    assert result.latency_histogram().total_count == 60
    assert sum(i["counts"]["ok"] for i in result.intervals) == 60
    assert not result.partial


def test_two_client_processes_stop_early() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    with ScriptedServer("ok") as server:
        timer.start()
        try:
            result = run_load(workload(server.port, "asyncio", client_procs=2, duration_s=30.0), stop=stop)
        finally:
            timer.cancel()
    assert result.partial
    assert result.elapsed_s < 30


@pytest.mark.parametrize("engine", ENGINES)
def test_impossible_workload_is_refused_before_any_socket(engine: str) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        run_load(workload(closed_port(), engine, concurrency=0))
    with pytest.raises(ValueError, match="cannot resolve host"):
        run_load(workload(80, engine, host="no-such-host.invalid"))


def test_unresolvable_host_is_one_sentence_with_client_processes() -> None:
    with pytest.raises(ValueError, match="cannot resolve host"):
        run_load(workload(80, "asyncio", host="no-such-host.invalid", client_procs=2))
