"""A selector thread in front of a bounded thread pool (gunicorn's `gthread` worker model).

Why not one thread per connection: a bounded pool with one connection pinned to each thread
starves every connection past the pool size as soon as clients keep connections alive
(`wrk -c 64` against 16 threads leaves 48 connections unanswered). Here idle keep-alive
connections wait in the selector, and a pool thread is taken only while a connection has bytes
to handle, so the pool bounds the *work* in flight, not the number of clients.

Connections come from "sources": the listening socket for the `threads` strategy, the AF_UNIX
channel from the parent for `scm-rights` workers. `on_closed` lets a source learn that one of
its connections ended (scm-rights uses it for least-connections dispatch).
"""

from __future__ import annotations

import collections
import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Deque, Dict, List, Optional

from . import log
from .app import App
from .connection import RECV_BYTES, HttpSession

SELECT_TIMEOUT_S = 0.5


class _Conn:
    __slots__ = ("last_active", "session", "sock")

    def __init__(self, sock: socket.socket, app: App) -> None:
        self.sock = sock
        self.session = HttpSession(app)
        self.last_active = time.monotonic()


class Reactor:
    def __init__(
        self,
        app: App,
        threads: int,
        idle_timeout_s: float = 30.0,
        io_timeout_s: float = 30.0,
        on_closed: Optional[Callable[[], None]] = None,
        thread_initializer: Optional[Callable[[], None]] = None,
    ) -> None:
        self._app = app
        self._idle_timeout_s = idle_timeout_s
        self._io_timeout_s = io_timeout_s
        self._on_closed = on_closed
        self._selector = selectors.DefaultSelector()
        self._pool = ThreadPoolExecutor(threads, "hangbench-worker", initializer=thread_initializer)
        # Pool threads hand connections back through this deque and wake the selector.
        self._returned: Deque[_Conn] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self._waiting: Dict[socket.socket, _Conn] = {}

    def add_source(self, fileobj: socket.socket, accept: Callable[[], List[socket.socket]]) -> None:
        """Call `accept()` whenever `fileobj` is readable; it returns new connections (maybe none)."""
        self._selector.register(fileobj, selectors.EVENT_READ, lambda: self._adopt(accept()))

    def run(self) -> None:
        """Serve until the process is asked to stop (ServerStop interrupts the select)."""
        while True:
            for key, _ in self._selector.select(SELECT_TIMEOUT_S):
                if isinstance(key.data, _Conn):
                    self._dispatch(key.data)
                else:
                    key.data()  # a source or the wake-up pipe
            self._close_idle()

    def close(self) -> None:
        try:
            self._pool.shutdown(wait=False, cancel_futures=True)
        except TypeError:  # pragma: no cover - Python 3.8 has no cancel_futures
            self._pool.shutdown(wait=False)
        for conn in list(self._waiting.values()):
            self._finish(conn)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _adopt(self, socks: List[socket.socket]) -> None:
        for sock in socks:
            conn = _Conn(sock, self._app)
            self._wait(conn)

    def _wait(self, conn: _Conn) -> None:
        conn.last_active = time.monotonic()
        self._waiting[conn.sock] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _dispatch(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        del self._waiting[conn.sock]
        self._pool.submit(self._handle, conn)

    def _handle(self, conn: _Conn) -> None:
        """In a pool thread: handle the bytes that are ready, then give the connection back."""
        try:
            conn.sock.settimeout(self._io_timeout_s)
            out = conn.session.receive(conn.sock.recv(RECV_BYTES))
            if out:
                conn.sock.sendall(out)
        except OSError:
            conn.session.open = False
        except Exception:
            log.get().exception("unexpected error while serving a connection; closing it")
            conn.session.open = False
        if conn.session.open:
            self._returned.append(conn)
            try:
                self._wake_w.send(b"\0")
            except BlockingIOError:
                pass  # the wake-up pipe is full: the selector is awake anyway
        else:
            self._finish(conn)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._returned:
            self._wait(self._returned.popleft())

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - self._idle_timeout_s
        for conn in [c for c in self._waiting.values() if c.last_active < cutoff]:
            self._selector.unregister(conn.sock)
            del self._waiting[conn.sock]
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        conn.sock.close()
        if self._on_closed is not None:
            self._on_closed()
