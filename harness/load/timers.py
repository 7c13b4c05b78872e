"""Timers finer than a millisecond for the event-loop engine: the open-loop send schedule and
the paced closed loop's next request.

Both event loops the engine runs on round their own timers to whole milliseconds (asyncio's
epoll selector ceils the timeout to 1 ms, libuv keeps time in ms). At 2,000 requests/s the
intended times are 0.5 ms apart, so a millisecond timer sends them in pairs, up to a
millisecond late: the lag lands in the corrected latency (it is measured from the intended
time, as it must be), and the pairs queue behind each other in the server. A Linux timerfd
armed at an absolute CLOCK_MONOTONIC instant (the clock of `time.monotonic()`) wakes the loop
within tens of microseconds and is watched like any socket, so the loop still sleeps in one
poll call: no spinning, no thread.

`Timers` keeps one heap of (when, callback) in front of that one descriptor (a paced run has a
timer per connection), and wakes at most every `floor_s` (see `wake_floor_s`). Without a timerfd (not Linux,
or libc not reachable) it falls back to the loop's own timers with a floor of `MIN_TIMER_S`: a
shorter sleep would only spin the loop and burn the CPU the server needs. `precise` says which
one a run got.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import os
import time
from collections.abc import Callable

MIN_TIMER_S = 0.001  # the loops' own timer resolution: the fallback never sleeps less
# A timerfd wake-up costs two system calls and a pass of the loop with few events in it: at
# 84,000 req/s, waking every 100 us cost the client 20 % more CPU per request than waking every
# millisecond, and it fell behind its schedule. So the wake-ups are at least `wake_floor_s(rate)`
# apart: 100 us up to 10,000 req/s per client process, then rate x 10 ns (fewer wake-ups per
# request as the rate grows), at most the loops' own millisecond. Each wake-up sends what came
# due (the schedule lag shows the batching); at such rates responses, arriving every few
# microseconds, send most requests anyway (a connection that frees up sends what is due).
MIN_PRECISE_S = 0.0001
WAKE_FLOOR_PER_RPS_S = 1e-8
MAX_FIRED_PER_WAKE = 100_000  # bounds one wake-up's loop; the rest run at the next (immediate) one

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_CLOEXEC = 0o2000000  # = O_CLOEXEC
_TFD_NONBLOCK = 0o4000  # = O_NONBLOCK


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """One non-blocking timerfd on CLOCK_MONOTONIC, armed at absolute instants (Python 3.13's
    os.timerfd_* when present, else libc through ctypes)."""

    def __init__(self) -> None:
        self._settime_ns: Callable[[int], None]
        os_create, os_settime = getattr(os, "timerfd_create", None), getattr(os, "timerfd_settime_ns", None)
        if os_create is not None and os_settime is not None:  # Python 3.13+
            self.fd = os_create(time.CLOCK_MONOTONIC, flags=_TFD_NONBLOCK | _TFD_CLOEXEC)

            def settime_ns(when_ns: int) -> None:
                os_settime(self.fd, flags=_TFD_TIMER_ABSTIME, initial=when_ns)

            self._settime_ns = settime_ns
            return
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
        create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        settime.restype = ctypes.c_int
        fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        spec = _Itimerspec()

        def settime_ctypes(when_ns: int) -> None:
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(when_ns, 1_000_000_000)
            if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
                raise OSError(ctypes.get_errno(), "timerfd_settime failed")

        self._settime_ns = settime_ctypes

    def arm(self, when: float) -> None:
        # An instant already past fires at once; 0 would disarm, so never below 1 ns.
        self._settime_ns(max(1, int(when * 1e9)))

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiry count; reading it clears the readiness
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def wake_floor_s(rate: float) -> float:
    """The least time between two wake-ups of a client process sending `rate` requests/s."""
    return min(MIN_TIMER_S, max(MIN_PRECISE_S, rate * WAKE_FLOOR_PER_RPS_S))


def _timerfd() -> _TimerFd | None:
    try:
        return _TimerFd()
    except (OSError, AttributeError, TypeError):  # not Linux, no libc symbol, or refused
        return None


class Timers:
    """call_at(when, callback) on `loop` at time.monotonic() instants, sub-millisecond where a
    timerfd exists. Callbacks run in the loop's thread; `close()` drops whatever is pending."""

    def __init__(self, loop: asyncio.AbstractEventLoop, precise: bool = True, floor_s: float = MIN_PRECISE_S) -> None:
        self.loop = loop
        self.floor_s = floor_s  # the least time between two timerfd wake-ups
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties fire in the order they were set
        self._armed: float | None = None  # the instant the wake-up is set for
        self._handle: asyncio.TimerHandle | None = None  # fallback only
        self._firing = False
        self._fd = _timerfd() if precise else None
        if self._fd is not None:
            try:
                loop.add_reader(self._fd.fd, self._wake)
            except (NotImplementedError, RuntimeError, OSError):  # a loop that cannot watch it
                self._fd.close()
                self._fd = None
        self.precise = self._fd is not None

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._order), callback))
        if not self._firing and (self._armed is None or when < self._armed):
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._fd is not None:
            when = max(when, time.monotonic() + self.floor_s)
            if self._armed is not None and when >= self._armed:
                return  # the floor keeps the wake-up already set: no system call
            self._armed = when
            self._fd.arm(when)
            return
        self._armed = when
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self.loop.call_later(max(when - time.monotonic(), MIN_TIMER_S), self._wake)

    def _wake(self) -> None:
        if self._fd is not None:
            self._fd.clear()
        self._handle = None
        self._armed = None
        heap = self._heap
        now = time.monotonic()
        self._firing = True  # callbacks may set timers (the next send): armed once, below
        try:
            for _ in range(MAX_FIRED_PER_WAKE):
                if not heap or heap[0][0] > now:
                    break
                heapq.heappop(heap)[2]()
        finally:
            self._firing = False
            if heap:
                self._arm(heap[0][0])

    def close(self) -> None:
        self._heap.clear()
        self._armed = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd is not None:
            try:
                self.loop.remove_reader(self._fd.fd)
            finally:
                self._fd.close()
                self._fd = None
