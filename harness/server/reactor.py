"""A selector thread in front of a bounded thread pool (gunicorn's `gthread` worker model).

Why not one thread per connection: a bounded pool with one connection pinned to each thread
starves every connection past the pool size as soon as clients keep connections alive
(`wrk -c 64` against 16 threads leaves 48 connections unanswered). Here idle keep-alive
connections wait in the selector, and a pool thread is taken only while a connection has bytes
to handle, so the pool bounds the *work* in flight, not the number of clients.

Connections come from "sources": the listening socket for the `threads` strategy, the AF_UNIX
channel from the parent for `scm-rights` workers. `on_closed` lets a source learn that one of
its connections ended (scm-rights uses it for least-connections dispatch).

What a client can hold here is bounded (see `connection.py` for the per-connection bounds):

- A pool thread reads one chunk, then answers the complete requests in it one at a time, each
  sent before the next runs, and looks whether the peer has gone before each further one.
  Nothing more is read from that connection until all of them are answered.
- Connections waiting in the selector with an overdue request head get a 408 (or, with no
  byte received, just a close); idle ones are closed after the idle timeout.
- At most `max_connections` (default `App.limits.max_connections`) connections are served at
  once. At the cap, listening sources are taken out of the selector, so new connections wait
  in the kernel's listen backlog until one closes; a connection accepted in the same burst
  past the cap waits, unread, in arrival order, for a free slot. A source that is not a
  listening socket (the scm-rights channel) is never paused: its sender decides how many
  connections it hands over.
"""

from __future__ import annotations

import collections
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Deque, Dict, List, Optional

from . import log
from .app import App
from .connection import RECV_BYTES, HttpSession, linger_close, peer_closed, send_nowait, send_parts
from .protocol import MAX_HEAD_BYTES

SELECT_TIMEOUT_S = 0.5
SWEEP_INTERVAL_S = 0.25  # how often waiting connections are checked for deadlines
# Each request takes at least one buffered byte, so one read cannot hold more requests than this.
MAX_REQUESTS_PER_READ = RECV_BYTES + MAX_HEAD_BYTES


class _Conn:
    __slots__ = ("last_active", "session", "sock")

    def __init__(self, sock: socket.socket, app: App) -> None:
        self.sock = sock
        self.session = HttpSession(app)
        self.last_active = time.monotonic()


class _Source:
    __slots__ = ("accept", "fileobj", "pausable", "registered")

    def __init__(self, fileobj: socket.socket, accept: Callable[[], List[socket.socket]], pausable: bool) -> None:
        self.fileobj = fileobj
        self.accept = accept
        self.pausable = pausable
        self.registered = True


def is_listening(sock: socket.socket) -> bool:
    """True for a listening socket (whose connections can wait in its backlog)."""
    option = getattr(socket, "SO_ACCEPTCONN", None)
    try:
        if option is not None:
            return bool(sock.getsockopt(socket.SOL_SOCKET, option))
        sock.getpeername()
    except OSError:
        return option is None  # without SO_ACCEPTCONN: no peer means a listener
    return False


class Reactor:
    def __init__(
        self,
        app: App,
        threads: int,
        idle_timeout_s: float = 30.0,
        io_timeout_s: float = 30.0,
        on_closed: Optional[Callable[[], None]] = None,
        thread_initializer: Optional[Callable[[], None]] = None,
        stop_fd: Optional[int] = None,
        max_connections: Optional[int] = None,
    ) -> None:
        self._app = app
        self._idle_timeout_s = idle_timeout_s
        self._io_timeout_s = io_timeout_s
        self._on_closed = on_closed
        self._max_connections = app.limits.max_connections if max_connections is None else max_connections
        self._selector = selectors.DefaultSelector()
        self._pool = ThreadPoolExecutor(threads, "hangbench-worker", initializer=thread_initializer)
        # Pool threads hand connections back through this deque and wake the selector.
        self._returned: Deque[_Conn] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self._waiting: Dict[socket.socket, _Conn] = {}
        self._sources: List[_Source] = []
        self._parked: Deque[socket.socket] = collections.deque()  # accepted past the cap
        self._served = 0  # connections adopted and not yet finished (waiting or in the pool)
        self._served_lock = threading.Lock()  # pool threads finish connections too
        self._last_sweep = 0.0
        # The server's stop fd (Strategy.stop_fd): readable once the process is asked to stop.
        if stop_fd is not None:
            self._selector.register(stop_fd, selectors.EVENT_READ, None)

    def add_source(
        self, fileobj: socket.socket, accept: Callable[[], List[socket.socket]], pausable: Optional[bool] = None
    ) -> None:
        """Call `accept()` whenever `fileobj` is readable; it returns new connections (maybe none).

        A `pausable` source is left unread while the connection cap is reached (default: when
        `fileobj` is a listening socket)."""
        source = _Source(fileobj, accept, is_listening(fileobj) if pausable is None else pausable)
        self._sources.append(source)
        self._selector.register(fileobj, selectors.EVENT_READ, source)

    @property
    def connections(self) -> int:
        """Connections being served now (parked ones not included)."""
        return self._served

    def run(self) -> None:
        """Serve until `stop_fd` is readable (or, without one, until an exception such as ServerStop)."""
        while True:
            for key, _ in self._selector.select(SELECT_TIMEOUT_S):
                data = key.data
                if data is None:  # the stop fd
                    return
                if isinstance(data, _Conn):
                    self._dispatch(data)
                elif isinstance(data, _Source):
                    self._adopt(data.accept())
                else:
                    data()  # the wake-up pipe
            self._admit_parked()
            self._pace_sources()
            self._sweep()

    def close(self) -> None:
        try:
            self._pool.shutdown(wait=False, cancel_futures=True)
        except TypeError:  # pragma: no cover - Python 3.8 has no cancel_futures
            self._pool.shutdown(wait=False)
        for conn in list(self._waiting.values()):
            self._finish(conn)
        while self._parked:
            self._parked.popleft().close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _adopt(self, socks: List[socket.socket]) -> None:
        for sock in socks:
            if self._served < self._max_connections and not self._parked:
                self._start(sock)
            else:
                self._parked.append(sock)

    def _start(self, sock: socket.socket) -> None:
        with self._served_lock:
            self._served += 1
        self._wait(_Conn(sock, self._app))

    def _admit_parked(self) -> None:
        while self._parked and self._served < self._max_connections:
            self._start(self._parked.popleft())

    def _pace_sources(self) -> None:
        """Pause pausable sources at the cap, resume them below it (selector thread only)."""
        full = self._served + len(self._parked) >= self._max_connections
        for source in self._sources:
            if source.pausable and source.registered == full:
                if full:
                    self._selector.unregister(source.fileobj)
                else:
                    self._selector.register(source.fileobj, selectors.EVENT_READ, source)
                source.registered = not full

    def _wait(self, conn: _Conn) -> None:
        conn.last_active = time.monotonic()
        self._waiting[conn.sock] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _dispatch(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        del self._waiting[conn.sock]
        self._pool.submit(self._handle, conn)

    def _handle(self, conn: _Conn) -> None:
        """In a pool thread: read what is ready, answer the requests it completes one at a time,
        then give the connection back."""
        session, sock = conn.session, conn.sock

        def gone() -> bool:
            return peer_closed(sock)

        try:
            sock.settimeout(self._io_timeout_s)
            session.receive(sock.recv(RECV_BYTES))
            for _ in range(MAX_REQUESTS_PER_READ):
                parts = session.next_response(gone)
                if parts is None:
                    break
                send_parts(sock, parts)
        except OSError:
            session.open = False
        except Exception:
            log.get().exception("unexpected error while serving a connection; closing it")
            session.open = False
        if session.open:
            self._returned.append(conn)
            self._wake()
        else:
            if session.linger:  # after an error response: let the client read it (connection.py)
                linger_close(sock)
            self._finish(conn)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the wake-up pipe is full: the selector is awake anyway
        except OSError:
            pass  # closed: the reactor is stopping

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._returned:
            self._wait(self._returned.popleft())

    def _sweep(self) -> None:
        """Close waiting connections whose request head is overdue (408) or that idled out."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_INTERVAL_S:
            return
        self._last_sweep = now
        idle_cutoff = now - self._idle_timeout_s
        for conn in list(self._waiting.values()):
            if conn.session.head_overdue(now):
                self._drop(conn, conn.session.timed_out())
            elif conn.last_active < idle_cutoff:
                self._drop(conn, b"")

    def _drop(self, conn: _Conn, last_word: bytes) -> None:
        self._selector.unregister(conn.sock)
        del self._waiting[conn.sock]
        send_nowait(conn.sock, last_word)
        self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        conn.sock.close()
        with self._served_lock:
            self._served -= 1
            was_full = self._served + 1 + len(self._parked) >= self._max_connections
        if was_full:
            self._wake()  # from a pool thread: let the selector resume accepting
        if self._on_closed is not None:
            self._on_closed()
