"""The article's client: a ThreadPoolExecutor(max_workers=concurrency) of blocking sockets.

Closed loop only, on purpose: it is the client the article's users ran, and pacing blocking
workers to a schedule would make it a different client (the registry refuses a rate for it).

It exists to reproduce what the article's users ran, not to be fast: each worker opens a
plain blocking socket per request (keeps it only for `keep-alive` with a Content-Length
response), sends with `sendall`, and reads per the workload's read mode. Every blocking call
gets `settimeout(time left until the request's deadline)`, so a server that never answers
yields a `hang` at the deadline and the worker moves on; nothing here can block for longer.

Workers share one Schedule and one Tally under a lock. The calling thread is the clock: it
reports progress, watches the stop event, and on stop shuts down the workers' sockets so that
they return at once instead of at their deadlines.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from . import engines
from .metrics import HANG, MALFORMED, OK, RESET, LoadResult
from .net import raise_fd_limit, resolve
from .outcome import Tally, classify_error
from .response import ResponseReader
from .schedule import MEASURED, STOP, CpuWindow, Progress, Schedule
from .timeline import CONNECT_START, CONNECTED, FIN, FIRST_BYTE, REQUEST_WRITTEN, RESPONSE_COMPLETE, RST, TimelineBook
from .workload import Workload

ProgressFn = Callable[[Progress], None]
CLOCK_STEP_S = 0.05
PROGRESS_INTERVAL_S = 1.0
RECV_BYTES = 65536
MAX_REQUESTS_PER_WORKER = 10**9  # a formal bound; the schedule's clock ends workers long before


class _Shared:
    """What the workers share; every mutation of schedule/tally/sockets holds `lock`."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.family, self.address = resolve(workload.host, workload.port)
        self.request = workload.request_bytes()
        self.lock = threading.Lock()
        self.schedule = Schedule(workload, time.monotonic())
        self.tally = Tally(self.schedule.measure_start)
        self.sockets: set[socket.socket] = set()
        self.book = TimelineBook(workload.timelines)
        # Each worker's current request's start (0.0: none): the clock reads the oldest, once a
        # progress report, so the run can capture while a request is overdue, not yet hung.
        self.started: list[float] = [0.0] * workload.concurrency

    def admit(self) -> tuple[int, float]:
        with self.lock:
            now = time.monotonic()
            return self.schedule.admit(now), now

    def record(self, kind: str, measured: bool, now: float, latency: float, detail: str | None) -> None:
        with self.lock:
            if self.schedule.stopped_at is None:  # after a stop, in-flight requests are not counted
                self.tally.record(kind, measured, now, latency, latency, detail)

    def note(self, kind: str, start: float, marks: list[tuple[str, float]], port: int | None) -> None:
        """A measured request that hung or failed: keep its timeline (bounded)."""
        with self.lock:
            if self.schedule.stopped_at is None:
                self.book.add(kind, start, marks, port, hung=kind == HANG)

    def oldest_in_flight_s(self, now: float) -> float | None:
        begun = [t for t in self.started if t]
        return now - min(begun) if begun else None

    def track(self, sock: socket.socket, add: bool) -> None:
        with self.lock:
            if add:
                self.sockets.add(sock)
            else:
                self.sockets.discard(sock)

    def interrupt(self) -> None:
        """Wake every worker blocked on a socket (after a stop)."""
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run(workload: Workload, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> LoadResult:
    raise_fd_limit(workload.concurrency + 64)
    shared = _Shared(workload)
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=workload.concurrency, thread_name_prefix="hangbench-client"
    )
    try:
        futures = [executor.submit(_worker, shared, index) for index in range(workload.concurrency)]
        partial, cpu = _clock(shared, futures, progress, stop)
    except BaseException:  # e.g. KeyboardInterrupt in the calling thread: release the workers
        with shared.lock:
            shared.schedule.stop(time.monotonic())
        shared.interrupt()
        raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    elapsed = shared.schedule.elapsed(shared.tally.last_end or time.monotonic())
    with shared.lock:
        result = shared.tally.result(elapsed, cpu.cpu_s, cpu.wall_s, engine="threads", loop="threads", partial=partial)
        book = shared.book
        return replace(result, timelines=list(book.timelines), hang_milestones=dict(book.hang_milestones))


def _clock(
    shared: _Shared,
    futures: list[concurrent.futures.Future[None]],
    progress: ProgressFn | None,
    stop: threading.Event | None,
) -> tuple[bool, CpuWindow]:
    """Runs in the calling thread until the workers are done; returns (partial, cpu window)."""
    schedule, cpu = shared.schedule, CpuWindow()
    limit = engines.hard_limit(shared.workload, schedule.start)
    next_progress = schedule.start + PROGRESS_INTERVAL_S
    for _ in range(int((limit - schedule.start) / CLOCK_STEP_S) + 10):
        done, _pending = concurrent.futures.wait(futures, timeout=CLOCK_STEP_S)
        now = time.monotonic()
        if now >= schedule.measure_start:
            cpu.begin()
        if len(done) == len(futures):
            cpu.end()
            _raise_worker_error(done)
            return False, cpu
        if stop is not None and stop.is_set():
            with shared.lock:
                schedule.stop(now)
            shared.interrupt()
            cpu.end()
            return True, cpu
        if schedule.issuing_over(now):
            cpu.end()
        if progress is not None and now >= next_progress:
            next_progress = now + PROGRESS_INTERVAL_S
            with shared.lock:
                phase = schedule.phase(now)
                counts = dict(shared.tally.warmup if phase == "warmup" else shared.tally.counts)
            oldest = shared.oldest_in_flight_s(now)
            progress(Progress(phase, round(schedule.phase_elapsed(now), 3), counts, oldest))
        if now >= limit:
            break
    with shared.lock:
        schedule.stop(time.monotonic())
    shared.interrupt()
    cpu.end()
    return True, cpu


def _raise_worker_error(done: set[concurrent.futures.Future[None]]) -> None:
    for future in done:
        error = future.exception()
        if error is not None:
            raise error


def _worker(shared: _Shared, index: int) -> None:
    reader = ResponseReader(read_eof=shared.workload.read == "eof")
    deadline_s = shared.workload.deadline_s
    sock: socket.socket | None = None
    port: int | None = None
    started = shared.started
    try:
        for _ in range(MAX_REQUESTS_PER_WORKER):
            admitted, t0 = shared.admit()
            if admitted == STOP:
                return
            started[index] = t0
            marks: list[tuple[str, float]] = []  # (milestone, monotonic time): kept only if it fails
            kind, detail, sock, port = _request(shared, reader, sock, t0 + deadline_s, marks, port)
            now = time.monotonic()
            started[index] = 0.0
            latency = now - t0
            if latency >= deadline_s:
                kind = HANG
            shared.record(kind, admitted == MEASURED, now, latency, detail)
            if kind != OK and admitted == MEASURED:
                shared.note(kind, t0, marks, port)
    finally:
        started[index] = 0.0
        if sock is not None:
            _close(shared, sock)


def _request(
    shared: _Shared,
    reader: ResponseReader,
    sock: socket.socket | None,
    deadline: float,
    marks: list[tuple[str, float]],
    port: int | None,
) -> tuple[str, str | None, socket.socket | None, int | None]:
    """One request; returns (kind, detail, socket to reuse or None, the client's local port)."""
    if sock is None:
        sock = socket.socket(shared.family, socket.SOCK_STREAM)
        shared.track(sock, True)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            marks.append((CONNECT_START, time.monotonic()))
            sock.connect((shared.address, shared.workload.port))
            marks.append((CONNECTED, time.monotonic()))
            port = sock.getsockname()[1]  # once per connection: joins the server's view of it
        except OSError as error:
            _close(shared, sock)
            kind, detail = classify_error(error, connecting=True)
            return kind, detail, None, None
    reader.reset()
    try:
        kind = _exchange(sock, shared.request, reader, deadline, marks)
    except OSError as error:
        _close(shared, sock)
        kind, detail = classify_error(error, connecting=False)
        if kind != HANG:
            marks.append((RST if kind == RESET else FIN, time.monotonic()))
        return kind, detail, None, port
    if kind == MALFORMED or not (shared.workload.keep_alive and reader.reusable):
        _close(shared, sock)
        return kind, None, None, port
    return kind, None, sock, port


def _exchange(
    sock: socket.socket, request: bytes, reader: ResponseReader, deadline: float, marks: list[tuple[str, float]]
) -> str:
    sock.settimeout(_left(deadline))
    sock.sendall(request)
    marks.append((REQUEST_WRITTEN, time.monotonic()))
    for _ in range(MAX_REQUESTS_PER_WORKER):  # each recv returns >= 1 byte or ends the loop
        sock.settimeout(_left(deadline))
        data = sock.recv(RECV_BYTES)
        if not data:
            marks.append((FIN, time.monotonic()))
        elif marks[-1][0] == REQUEST_WRITTEN:
            marks.append((FIRST_BYTE, time.monotonic()))
        kind = reader.feed(data) if data else reader.feed_eof()
        if kind is not None:
            return kind
        if data and reader.read_eof and reader.body_complete():
            marks.append((RESPONSE_COMPLETE, time.monotonic()))  # all of it; now it waits for the FIN
    raise TimeoutError("response never ended")  # pragma: no cover - unreachable in practice


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _close(shared: _Shared, sock: socket.socket) -> None:
    shared.track(sock, False)
    try:
        sock.close()
    except OSError:
        pass
