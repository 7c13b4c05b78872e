"""The fast client: one event loop (uvloop when importable), `concurrency` slots (connections).

Shaped for speed, because the client must never be the bottleneck it claims to measure:
- callbacks, not coroutines, on the hot path: each slot is a small state machine driven by
  asyncio Protocol callbacks; a keep-alive response arrives in `data_received` and the next
  request is written from there, with no task, future or await per request;
- one pre-built request (bytes), one sans-I/O `ResponseReader` per slot, reused; a response
  that repeats the last `ok` one is recorded and answered with the next request in a few steps
  (the slots' hot path, slots.py);
- no timer per request: a ticker sweeps all slots every few milliseconds and ends the ones
  past their deadline as `hang` (a response completing after the deadline is a hang too, so
  the sweep's granularity never changes a classification);
- the host is resolved once, so connects skip the resolver.

A connection-per-request (`close`) request starts at its connect; a keep-alive request starts
at its send, or at its connect when the slot had to (re)connect first. A keep-alive connection
is made with a task (`loop.create_connection` is a coroutine) and runs on a transport; in
`close` mode, where a connection carries one request, the slot drives a raw non-blocking socket
instead (rawconn.py: no task, transport or protocol object per request, four fewer system calls),
with the same slot events, outcomes and milestones.

Closed loop (no `rate`): a slot sends its next request as soon as its last one ends. Open loop
(`rate`): the slots are a connection pool; `dispatch` sends requests at their intended times
(open_loop.py keeps the schedule, the wait queue and the lag) and a slot that frees up takes
the oldest waiting request. Paced closed loop (`rate`, `paced`): a slot starts its requests on
a grid one pace period apart, each once its last response is in (at once if that was late). All three
share the slot state machine and differ only in what a slot does next (`next_request`), so
the closed-loop hot path is unchanged. Intended times are kept by `timers.Timers` (a timerfd:
the loops' own timers are millisecond-grained, which at 2,000 req/s would send in pairs).

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
from .metrics import LoadResult
from .net import raise_fd_limit, resolve
from .open_loop import OpenLoop
from .outcome import Tally
from .rawconn import Poller, available
from .schedule import CpuWindow, Progress, Schedule
from .slots import IDLE, OpenSlot, PacedSlot, Slot
from .timeline import TimelineBook
from .timers import Timers, wake_floor_s
from .workload import Workload

ProgressFn = Callable[[Progress], None]

PROGRESS_INTERVAL_S = 1.0
CLEANUP_TIMEOUT_S = 2.0


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
        return loop.run_until_complete(Run(workload, loop, name, progress, stop).main(start_at))
    finally:
        gc.unfreeze()
        loop.close()


class Run:
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
        self.free: list[Slot] = []  # open loop: connections with nothing to send
        self.cpu = CpuWindow()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots: list[Slot] = []
        self.idle = 0
        self.all_idle = asyncio.Event()
        self.partial = False
        self.schedule: Schedule = Schedule(workload, time.monotonic())
        self.timers: Timers | None = None  # open or paced loop: the intended times' alarms
        self.poller: Poller | None = None  # close mode: the raw connections' epoll set
        self.pace_s = workload.pace_period_s() if workload.is_paced else 0.0
        # A plain closed loop (its slots send again at once): repeated `ok` responses take the
        # slots' hot path (Slot.on_data).
        self.hot = workload.load_model != engines.OPEN and not workload.is_paced

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
        open_loop = workload.load_model == engines.OPEN
        self.tally = Tally(schedule.measure_start, service=open_loop)
        self.loop.call_later(max(0.0, schedule.measure_start - time.monotonic()), self.cpu.begin)
        if workload.rate is not None:
            self.timers = Timers(self.loop, floor_s=wake_floor_s(workload.share_rate()))
        if not workload.keep_alive and available():
            self.poller = Poller(self.loop, self.family, self.address, self.port, self.request, workload.concurrency)
        try:
            if open_loop:
                self.open_loop = OpenLoop(workload, schedule, self.tally)
                self.slots = [OpenSlot(self) for _ in range(workload.concurrency)]
                self.free = list(self.slots)
                self.dispatch()
            elif workload.is_paced:
                spread = self.pace_s / workload.concurrency  # first starts spread over one period, not a burst
                paced = [PacedSlot(self, schedule.start + i * spread) for i in range(workload.concurrency)]
                self.slots = list(paced)
                for paced_slot in paced:
                    self.timers.call_at(paced_slot.due, paced_slot.begin)  # type: ignore[union-attr]
            else:
                self.slots = [Slot(self) for _ in range(workload.concurrency)]
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
            paced_rps=workload.share_rate() if workload.is_paced else None,
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
            self.timers.call_at(open_loop.next_due, self.dispatch)  # type: ignore[union-attr]

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
        if self.timers is not None:
            self.timers.close()  # no paced request starts during cleanup
        for slot in self.slots:
            slot.abandon()
        if self.poller is not None:
            self.poller.close()
        tasks = list(self.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=CLEANUP_TIMEOUT_S)
        await asyncio.sleep(0)  # let aborted transports deliver connection_lost
