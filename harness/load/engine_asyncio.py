"""The fast client: one event loop (uvloop when importable), `concurrency` slots (connections).

Shaped for speed, because the client must never be the bottleneck it claims to measure:
- callbacks, not coroutines, on the hot path: each slot is a small state machine driven by
  asyncio Protocol callbacks; a keep-alive response arrives in `data_received` and the next
  request is written from there, with no task, future or await per request;
- one pre-built request (bytes), one sans-I/O `ResponseReader` per slot, reused;
- no timer per request: a ticker sweeps all slots every few milliseconds and ends the ones
  past their deadline as `hang` (a response completing after the deadline is a hang too, so
  the sweep's granularity never changes a classification);
- the host is resolved once, so connects skip the resolver.

A connection-per-request (`close`) request starts at its connect; a keep-alive request starts
at its send, or at its connect when the slot had to (re)connect first. Only creating a
connection uses a task (`loop.create_connection` is a coroutine).

Closed loop (no `rate`): a slot sends its next request as soon as its last one ends. Open loop
(`rate`): the slots are a connection pool; `dispatch` sends requests at their intended times
(open_loop.py keeps the schedule, the wait queue and the lag) and a slot that frees up takes
the oldest waiting request. Both share the slot state machine; the open-loop slot differs only
in what it does next (`next_request`), so the closed-loop hot path is unchanged.

The ticker is also the run's clock: phase changes, the CPU window, progress reports, the
caller's stop event, and a hard time bound after which whatever is left is abandoned.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import replace

from . import engines
from .metrics import HANG, MALFORMED, OK, LoadResult
from .net import raise_fd_limit, resolve
from .open_loop import OpenLoop
from .outcome import Tally, classify_error
from .response import ResponseReader
from .schedule import MEASURED, STOP, CpuWindow, Progress, Schedule
from .timeline import CONNECT_START, CONNECTED, FIN, FIRST_BYTE, REQUEST_WRITTEN, RESPONSE_COMPLETE, RST, TimelineBook
from .workload import Workload

ProgressFn = Callable[[Progress], None]

IDLE, CONNECTING, WAITING = 0, 1, 2
PROGRESS_INTERVAL_S = 1.0
CLEANUP_TIMEOUT_S = 2.0
# Open loop: the dispatcher never sleeps less than this. Both loops' timers have millisecond
# resolution, so a shorter sleep only spins the loop (burning the CPU the server needs, which
# made sends *later* on a busy two-core machine); responses also trigger sends that are due.
MIN_TIMER_S = 0.001


def new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """A fresh event loop and its name: uvloop's when importable, else the stdlib's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def run(
    workload: Workload,
    progress: ProgressFn | None = None,
    stop: object | None = None,
    start_at: float | None = None,
    use_uvloop: bool = True,
) -> LoadResult:
    """Run `workload` in this process and thread (which must not be running an event loop).

    `stop` is anything with `is_set()` (threading or multiprocessing Event); `start_at` is a
    time.monotonic() instant to begin at, so that several client processes share one window.
    """
    loop, name = new_loop() if use_uvloop else (asyncio.new_event_loop(), "asyncio")
    # Everything alive now (modules, the harness's own state) is left out of the collector's
    # full passes while the load runs: the hot path makes little garbage, but the passes that
    # the allocations still trigger walked every object of the process (~5 % of the client's CPU).
    gc.freeze()
    try:
        return loop.run_until_complete(_Run(workload, loop, name, progress, stop).main(start_at))
    finally:
        gc.unfreeze()
        loop.close()


class _Conn(asyncio.Protocol):
    """One TCP connection of a slot; forwards events tagged with itself so that the slot can
    ignore a connection it has already given up on."""

    __slots__ = ("slot", "transport")

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.slot.on_connected(self)

    def data_received(self, data: bytes) -> None:
        self.slot.on_data(self, data)

    def eof_received(self) -> bool:
        self.slot.on_eof(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.on_lost(self, exc)


class _Slot:
    """One closed-loop client: issues a request, waits for its outcome, issues the next."""

    __slots__ = ("conn", "marks", "measured", "port", "reader", "run", "state", "t0", "task", "ts")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.conn: _Conn | None = None
        self.state = IDLE
        self.t0 = 0.0  # intended start of the current request (closed loop: its send)
        self.ts = 0.0  # actual start (send, or connect) of the current request
        self.measured = False
        self.reader = ResponseReader(read_eof=run.read_eof)
        self.task: asyncio.Task[None] | None = None
        # (milestone, monotonic time) of the current request, kept only if it hangs or fails
        # (harness.load.timeline), and the client port of the current connection.
        self.marks: list[tuple[str, float]] = []
        self.port: int | None = None

    # -- issuing -----------------------------------------------------------------------------
    def begin(self) -> None:
        """Closed loop: ask the schedule, then send at once (intended start = now)."""
        run = self.run
        now = time.monotonic()
        admitted = run.schedule.admit(now)
        if admitted == STOP:
            self.state = IDLE
            self.drop(abort=False)
            run.slot_idle()
            return
        self.send(now, admitted == MEASURED, now)

    def send(self, intended: float, measured: bool, now: float) -> None:
        """Send one request whose latency counts from `intended` (its service time from now)."""
        run = self.run
        self.measured = measured
        self.t0 = intended
        self.ts = now
        self.reader.reset()
        conn = self.conn
        if conn is not None:
            self.state = WAITING
            conn.transport.write(run.request)  # type: ignore[union-attr]
            self.marks = [(REQUEST_WRITTEN, now)]
            return
        self.marks = [(CONNECT_START, now)]
        self.state = CONNECTING
        self.conn = conn = _Conn(self)
        task = run.loop.create_task(self.connect(conn))
        self.task = task
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)

    async def connect(self, conn: _Conn) -> None:
        run = self.run
        try:
            await run.loop.create_connection(lambda: conn, run.address, run.port, family=run.family)
        except asyncio.CancelledError:
            return  # the slot gave up (deadline or shutdown) and has moved on
        except Exception as error:
            if conn is self.conn and self.state == CONNECTING:
                self.conn = None
                kind, detail = classify_error(error, connecting=True)
                self.finish(kind, detail)

    def finish(self, kind: str, detail: str | None = None) -> None:
        run = self.run
        now = time.monotonic()
        latency = now - self.t0
        if latency >= run.deadline:
            kind = HANG
        self.state = IDLE
        run.tally.record(kind, self.measured, now, latency, now - self.ts, detail)
        if kind != OK and self.measured and run.schedule.stopped_at is None:
            run.book.add(kind, self.t0, self.marks, self.port, hung=kind == HANG)
        self.next_request(now)

    def next_request(self, now: float) -> None:
        self.begin()

    def drop(self, abort: bool) -> None:
        """Forget the current connection, closing it (abort: at once, without a FIN wait)."""
        conn, self.conn = self.conn, None
        if conn is not None and conn.transport is not None:
            if abort:
                conn.transport.abort()
            else:
                conn.transport.close()

    # -- connection events -------------------------------------------------------------------
    def on_connected(self, conn: _Conn) -> None:
        if conn is not self.conn or self.state != CONNECTING:
            conn.transport.abort()  # type: ignore[union-attr]  # given up on already
            return
        self.state = WAITING
        conn.transport.write(self.run.request)  # type: ignore[union-attr]
        now = time.monotonic()
        self.marks.append((CONNECTED, now))
        self.marks.append((REQUEST_WRITTEN, now))  # handed to the transport, as a blocking send returns
        sockname = conn.transport.get_extra_info("sockname")  # type: ignore[union-attr]
        self.port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None

    def on_data(self, conn: _Conn, data: bytes) -> None:
        if conn is not self.conn or self.state != WAITING:
            return
        marks = self.marks
        if marks and marks[-1][0] == REQUEST_WRITTEN:
            marks.append((FIRST_BYTE, time.monotonic()))
        kind = self.reader.feed(data)
        if kind is None:
            if self.run.read_eof and marks[-1][0] != RESPONSE_COMPLETE and self.reader.body_complete():
                marks.append((RESPONSE_COMPLETE, time.monotonic()))  # all of it; now it waits for the FIN
            return
        if kind == MALFORMED:
            self.drop(abort=True)
        elif not (self.run.keep_alive and self.reader.reusable):
            self.drop(abort=False)
        self.finish(kind)

    def on_eof(self, conn: _Conn) -> None:
        if conn is not self.conn:
            return
        self.conn = None  # the transport closes itself (eof_received returns False)
        if self.state == WAITING:
            self.marks.append((FIN, time.monotonic()))
            self.finish(self.reader.feed_eof())

    def on_lost(self, conn: _Conn, exc: Exception | None) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        if self.state != WAITING:
            return
        self.marks.append((FIN if exc is None else RST, time.monotonic()))
        if exc is None:
            self.finish(self.reader.feed_eof())
        else:
            kind, detail = classify_error(exc, connecting=False)
            self.finish(kind, detail)

    # -- ticker ------------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        if self.state != IDLE and now - self.t0 >= self.run.deadline:
            if self.state == CONNECTING and self.task is not None:
                self.task.cancel()
            self.drop(abort=True)
            self.finish(HANG)

    def abandon(self) -> None:
        """Shutdown: end whatever is in flight without counting it."""
        if self.task is not None:
            self.task.cancel()
        self.drop(abort=True)
        self.state = IDLE


class _OpenSlot(_Slot):
    """One pooled connection of an open-loop run: sends what the dispatcher hands it, then
    takes the oldest waiting request or returns to the free pool."""

    __slots__ = ()

    def next_request(self, now: float) -> None:
        run = self.run
        waiting = run.open_loop.next_waiting(now)  # type: ignore[union-attr]
        if waiting is not None:
            self.send(waiting[0], waiting[1], now)
            return
        run.free.append(self)
        if now >= run.open_loop.next_due:  # type: ignore[union-attr]  # due already: no timer wait
            run.send_due(now)
        else:
            run.check_done()


class _Run:
    def __init__(
        self,
        workload: Workload,
        loop: asyncio.AbstractEventLoop,
        loop_name: str,
        progress: ProgressFn | None,
        stop: object | None,
    ) -> None:
        self.workload = workload
        self.loop = loop
        self.loop_name = loop_name
        self.progress = progress
        self.stop = stop
        self.family, self.address = resolve(workload.host, workload.port)
        self.port = workload.port
        self.request = workload.request_bytes()
        self.deadline = workload.deadline_s
        self.read_eof = workload.read == "eof"
        self.keep_alive = workload.keep_alive
        self.tally = Tally()
        self.book = TimelineBook(workload.timelines)
        self.open_loop: OpenLoop | None = None
        self.free: list[_Slot] = []  # open loop: connections with nothing to send
        self.cpu = CpuWindow()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots: list[_Slot] = []
        self.idle = 0
        self.all_idle = asyncio.Event()
        self.partial = False
        self.schedule: Schedule = Schedule(workload, time.monotonic())

    def slot_idle(self) -> None:
        self.idle += 1
        if self.idle >= len(self.slots):
            self.all_idle.set()

    async def main(self, start_at: float | None) -> LoadResult:
        raise_fd_limit(self.workload.concurrency + 64)
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        workload = self.workload
        self.schedule = schedule = Schedule(workload, time.monotonic())
        open_loop = workload.rate is not None
        self.tally = Tally(schedule.measure_start, service=open_loop)
        self.loop.call_later(max(0.0, schedule.measure_start - time.monotonic()), self.cpu.begin)
        try:
            if open_loop:
                self.open_loop = OpenLoop(workload, schedule, self.tally)
                self.slots = [_OpenSlot(self) for _ in range(workload.concurrency)]
                self.free = list(self.slots)
                self.dispatch()
            else:
                self.slots = [_Slot(self) for _ in range(workload.concurrency)]
                for slot in self.slots:
                    slot.begin()
            await self.tick_until_done()
        finally:
            await self.shutdown()
        elapsed = schedule.elapsed(self.tally.last_end or time.monotonic())
        result = self.tally.result(
            elapsed,
            self.cpu.cpu_s,
            self.cpu.wall_s,
            engine="asyncio",
            loop=self.loop_name,
            partial=self.partial,
            schedule=self.open_loop.stats() if self.open_loop is not None else None,
        )
        return replace(result, timelines=list(self.book.timelines), hang_milestones=dict(self.book.hang_milestones))

    def dispatch(self) -> None:
        """Open loop: send every request that is due (catching up at once if late), then
        sleep until the next one is."""
        open_loop = self.open_loop
        if open_loop is None or not open_loop.issuing:
            return
        self.send_due(time.monotonic())
        if open_loop.issuing:
            delay = open_loop.next_due - time.monotonic()
            self.loop.call_later(max(delay, MIN_TIMER_S), self.dispatch)

    def send_due(self, now: float) -> None:
        """Send what is due now on free connections (the rest waits for one)."""
        open_loop = self.open_loop
        if open_loop is not None:
            for slot, intended, measured in open_loop.due(now, self.free):
                slot.send(intended, measured, now)
            if not open_loop.issuing:
                self.check_done()

    def check_done(self) -> None:
        """Open loop: done when nothing is left to send and every connection is free."""
        open_loop = self.open_loop
        if open_loop is not None and open_loop.done and len(self.free) == len(self.slots):
            self.all_idle.set()

    def tick_s(self) -> float:
        return min(0.05, max(0.002, self.deadline / 20))

    async def tick_until_done(self) -> None:
        tick, limit = self.tick_s(), engines.hard_limit(self.workload, self.schedule.start)
        next_progress = self.schedule.start + PROGRESS_INTERVAL_S
        max_ticks = int((limit - self.schedule.start) / tick) + 10
        for _ in range(max_ticks):
            try:
                await asyncio.wait_for(self.all_idle.wait(), tick)
                return
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if self.stop is not None and self.stop.is_set():  # type: ignore[attr-defined]
                self.schedule.stop(now)
                if self.open_loop is not None:
                    self.open_loop.stop()
                self.partial = True
                return
            if self.schedule.issuing_over(now):
                self.cpu.end()
            for slot in self.slots:
                slot.expire(now)
            if self.open_loop is not None:
                self.open_loop.expire(now)
                self.check_done()
            if now >= next_progress:
                next_progress = now + PROGRESS_INTERVAL_S
                self.report(now)
            if now >= limit:
                break
        self.partial = True  # something outlived every bound: give up on it

    def report(self, now: float) -> None:
        if self.progress is None:
            return
        phase = self.schedule.phase(now)
        counts = dict(self.tally.warmup if phase == "warmup" else self.tally.counts)
        begun = [slot.t0 for slot in self.slots if slot.state != IDLE]
        oldest = now - min(begun) if begun else None  # the run captures while a request is overdue
        self.progress(Progress(phase, round(self.schedule.phase_elapsed(now), 3), counts, oldest))

    async def shutdown(self) -> None:
        self.cpu.end()
        if self.open_loop is not None:
            self.open_loop.stop()  # a dispatch timer firing during cleanup sends nothing
        for slot in self.slots:
            slot.abandon()
        tasks = list(self.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=CLEANUP_TIMEOUT_S)
        await asyncio.sleep(0)  # let aborted transports deliver connection_lost
