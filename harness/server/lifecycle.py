"""How the server process is asked to stop: a flag plus a wake-up fd (gunicorn's arbiter model).

The SIGTERM/SIGINT handler does the least it can: it sets the flag and writes one byte to a
pipe. A strategy notices in whatever way fits its loop: it checks `stopping`, selects on the
pipe's read end next to its own sockets, registers it with its event loop, or sleeps in
`wait(timeout)`. Nothing is raised asynchronously into the middle of its code, so clean-up
runs where the strategy chooses.

One documented exception: a strategy modelled on a plain blocking `while True: accept()` loop
(the article's two) cannot look at a flag, so with `interrupt=True` the handler also raises
`ServerStop` in the main thread, once, as the server process always did.

Under fork a child starts with the parent's handlers; `blocked_stop_signals()` keeps the stop
signals pending across `fork()` until the child has reset them (`worker.init_worker`).
Standard library only, Python 3.8+.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from typing import Any, Iterator, Optional, Tuple

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MAX_WAKE_UPS = 10_000  # signals one `wait` sleeps through before it returns (is_set) regardless
WAKE_DRAIN_READS = 64


class ServerStop(BaseException):
    """Raised in the server's main thread on SIGTERM/SIGINT, for `interrupt_on_stop` strategies only.

    A BaseException so that strategies faithful to code with `except Exception:` around their
    accept loop (as the article's server has) still stop.
    """


class StopEvent:
    """The stop flag and its wake-up pipe; safe to set from a signal handler.

    A second, private pipe is the process's signal wake-up fd (install_stop_handlers): Python
    runs a handler only between bytecodes, so a stop signal arriving just before `wait`'s select
    (or taken by another thread) would leave the handler pending and the select asleep; the
    C-level handler writes this pipe at once. It is not the stop pipe, because it is written for
    every signal that has a Python handler (a plugin's SIGHUP too), and `stop_fd` must mean stop.
    """

    def __init__(self) -> None:
        # os.pipe() fds are non-inheritable: spawned children never get them; forked ones
        # close them in init_worker (workers.inherited_fds lists them).
        self._read, self._write = os.pipe()
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._read, self._write, self._wake_read, self._wake_write):
            os.set_blocking(fd, False)
        self.reason: Optional[str] = None

    @property
    def is_set(self) -> bool:
        return self.reason is not None

    def fileno(self) -> int:
        """The read end: readable once the stop was asked for (select, add_reader, selectors)."""
        return self._read

    @property
    def fds(self) -> Tuple[int, ...]:
        """Every descriptor of this event (a forked worker closes them all)."""
        return self._read, self._write, self._wake_read, self._wake_write

    @property
    def wakeup_fd(self) -> int:
        """The write end the C-level signal handler writes (signal.set_wakeup_fd)."""
        return self._wake_write

    def set(self, reason: str = "stop") -> None:
        if self.reason is None:
            self.reason = reason
        try:
            os.write(self._write, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already woken) or closed (already stopped)

    def wait(self, timeout: Optional[float]) -> bool:
        """Sleep until the stop is asked for or `timeout` seconds pass; return `is_set`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in range(MAX_WAKE_UPS):  # bounded: each turn ends in a signal's wake-up, or returns
            if self.is_set:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                readable = select.select([self._read, self._wake_read], [], [], left)[0]
            except (OSError, ValueError):
                return self.is_set  # closed under us: treat as woken
            if self._read in readable:
                return self.is_set
            if readable:
                # A signal: its Python handler runs now, between bytecodes (a stop sets the
                # flag; in a thread other than the main one the flag may come a moment later,
                # with the stop pipe's byte). Anything else: sleep on.
                self._drain_wakeups()
        return self.is_set

    def _drain_wakeups(self) -> None:
        for _ in range(WAKE_DRAIN_READS):
            try:
                if not os.read(self._wake_read, 512):
                    return
            except OSError:  # BlockingIOError: drained
                return

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


def install_stop_handlers(stop: StopEvent, interrupt: bool) -> None:
    """SIGTERM/SIGINT set `stop`; with `interrupt` they also raise ServerStop (once).

    The event's private wake-up pipe becomes the signal wake-up fd, so that `wait` cannot sleep
    through a stop signal whose handler is still pending (StopEvent). Strategies that select on
    `stop_fd` themselves do so with a bounded timeout or inside an event loop that runs pending
    handlers (uvloop installs its own wake-up fd while it runs).
    """

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        stop.set(name)
        if interrupt:
            # One-shot: a second signal must not interrupt the strategy's own clean-up; the
            # harness escalates to SIGKILL if the clean-up takes too long.
            for other in STOP_SIGNALS:
                signal.signal(other, signal.SIG_IGN)
            raise ServerStop(name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    signal.set_wakeup_fd(stop.wakeup_fd, warn_on_full_buffer=False)  # non-blocking, as it must be


@contextlib.contextmanager
def blocked_stop_signals(active: bool = True) -> Iterator[None]:
    """Keep SIGTERM/SIGINT pending (not lost) while the body forks; no-op when not `active`.

    Only needed under fork: a spawned child starts from exec, with default handlers, and the
    forkserver must not inherit a blocked mask (it would then ignore a SIGTERM for ever)."""
    if not active or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_stop_signals() -> None:
    """In a fresh worker, once its handlers are its own: deliver what arrived meanwhile."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
