"""Readiness for the reactor: listeners watched level-triggered, connections armed one wait at a time.

A connection waits for bytes in the poller, is handed to a pool thread when some arrive, and
waits again once that thread has answered. Done with `selectors`, each of those round trips
costs the selector thread an unregister, a wake-up byte and its read, and a register: four
system calls and a wake-up per request, all on the one thread every request goes through.

`EpollPoller` (Linux) keeps each connection in the epoll interest set with EPOLLONESHOT: an
event disarms it, and the pool thread that answered re-arms it itself with one
epoll_ctl(EPOLL_CTL_MOD), which the kernel allows from any thread. The selector thread is not
woken for it at all. `SelectorPoller` is the portable fallback (no epoll: macOS, the BSDs):
it emulates the one-shot wait by unregistering on each event and re-registering, in the
selector thread, what pool threads hand back through a deque and a wake-up socketpair.

Who may call what (the reactor keeps to it):
- `add`, `remove`, `disarm`, `poll`: the selector thread only.
- `arm`, `forget`, `wake`: any thread (the selector thread says so to `arm`). `arm` marks the
  connection `waiting` under its lock, so a selector thread that wants to close a waiting
  connection (`disarm`) takes that lock first and never closes an fd that a pool thread is
  about to re-arm (the fd number could otherwise be reused by a new connection and armed by
  mistake).

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import collections
import select
import selectors
import socket
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Union

# Closed under us (the reactor is stopping): the caller treats the connection as over.
_GONE = (OSError, ValueError)
DRAIN_READS = 64  # reads of the wake-up pair per drain: 64 x 4 KiB is more than its buffer holds


class Waiter:
    """What a poller needs of a connection: its socket, whether it waits, and a lock for that."""

    __slots__ = ("last_active", "lock", "registered", "sock", "waiting")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()  # held while `waiting` turns True and the fd is armed
        self.waiting = False  # armed in the poller (or about to be): nobody else is serving it
        self.registered = False  # in the poller's interest set (EpollPoller: armed or not)
        self.last_active = time.monotonic()


class _WakePipe:
    """A socketpair that makes a poll return early, written from any thread."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)

    def wake(self) -> None:
        try:
            self.w.send(b"\0")
        except OSError:
            pass  # full (the poll is awake anyway) or closed (the reactor is stopping)

    def drain(self) -> None:
        try:
            for _ in range(DRAIN_READS):  # bounded: wake-up bytes are one each, reads take 4 KiB
                if not self.r.recv(4096):
                    return
        except OSError:
            pass  # empty (EAGAIN) or closed

    def close(self) -> None:
        self.r.close()
        self.w.close()


class _Poller:
    """What both pollers share: the wake-up pipe, and disarming a connection."""

    def __init__(self) -> None:
        self._pipe = _WakePipe()

    def disarm(self, conn: Waiter) -> None:
        """Stop waiting for a waiting `conn` (selector thread; the caller holds `conn.lock`)."""
        conn.waiting = False
        self.forget(conn)

    def forget(self, conn: Waiter) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        self._pipe.wake()


class EpollPoller(_Poller):
    """epoll, connections with EPOLLONESHOT, re-armed by whichever thread finished with them."""

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self._data: Dict[int, Any] = {}  # fd -> what poll() returns for it
        self._epoll.register(self._pipe.r.fileno(), select.EPOLLIN)

    def add(self, fd: int, data: Any) -> None:
        """Watch `fd` (level-triggered) until `remove`; poll() returns `data` while it is readable."""
        self._data[fd] = data
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        self._epoll.unregister(fd)
        del self._data[fd]

    def arm(self, conn: Waiter, in_selector_thread: bool = False) -> bool:
        """Wait for `conn` to be readable once (any thread). False if the poller is closed."""
        fd = conn.sock.fileno()
        with conn.lock:
            conn.waiting = True
            conn.last_active = time.monotonic()
            try:
                if conn.registered:
                    self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
                else:
                    self._data[fd] = conn
                    self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
                    conn.registered = True
            except _GONE:
                conn.waiting = False
                return False
        return True

    def forget(self, conn: Waiter) -> None:
        """Before closing `conn` (any thread, `conn` not waiting): out of the interest set."""
        if conn.registered:
            conn.registered = False
            fd = conn.sock.fileno()
            if self._data.get(fd) is conn:
                del self._data[fd]
            try:
                self._epoll.unregister(fd)
            except _GONE:
                pass

    def poll(self, timeout: float) -> List[Any]:
        """The data of what is ready; a connection among them is no longer `waiting`."""
        ready = []
        for fd, _events in self._epoll.poll(timeout):
            data = self._data.get(fd)
            if data is None:
                self._pipe.drain()  # the wake-up pipe (or an fd forgotten meanwhile)
                continue
            if isinstance(data, Waiter):
                data.waiting = False
            ready.append(data)
        return ready

    def close(self) -> None:
        self._epoll.close()
        self._pipe.close()


class SelectorPoller(_Poller):
    """`selectors`, the one-shot wait emulated: unregister on each event, re-register what
    pool threads hand back (through a deque and the wake-up pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._pipe.r, selectors.EVENT_READ, None)
        self._returned: Deque[Waiter] = collections.deque()

    def add(self, fd: int, data: Any) -> None:
        self._selector.register(fd, selectors.EVENT_READ, data)

    def remove(self, fd: int) -> None:
        self._selector.unregister(fd)

    def arm(self, conn: Waiter, in_selector_thread: bool = False) -> bool:
        if in_selector_thread:
            self._register(conn)
            return True
        self._returned.append(conn)
        self._pipe.wake()
        return True

    def forget(self, conn: Waiter) -> None:
        if conn.registered:
            conn.registered = False
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, *_GONE):
                pass

    def poll(self, timeout: float) -> List[Any]:
        ready = []
        for key, _events in self._selector.select(timeout):
            data = key.data
            if data is None:
                self._pipe.drain()
                while self._returned:
                    self._register(self._returned.popleft())
            elif isinstance(data, Waiter):
                self.disarm(data)
                ready.append(data)
            else:
                ready.append(data)
        return ready

    def _register(self, conn: Waiter) -> None:
        conn.waiting = True
        conn.last_active = time.monotonic()
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.registered = True

    def close(self) -> None:
        self._selector.close()
        self._pipe.close()


Poller = Union[EpollPoller, SelectorPoller]


def make_poller(portable: Optional[bool] = None) -> Poller:
    """The fastest poller this platform has (`portable=True`: the `selectors` one anyway)."""
    if not portable and hasattr(select, "epoll") and hasattr(select, "EPOLLONESHOT"):
        return EpollPoller()
    return SelectorPoller()
