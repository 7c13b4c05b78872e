"""A selector thread in front of a bounded thread pool (gunicorn's `gthread` worker model).

Why not one thread per connection: a bounded pool with one connection pinned to each thread
starves every connection past the pool size as soon as clients keep connections alive
(`wrk -c 64` against 16 threads leaves 48 connections unanswered). Here idle keep-alive
connections wait in the poller, and a pool thread is taken only while a connection has bytes
to handle, so the pool bounds the *work* in flight, not the number of clients.

Connections come from "sources": the listening socket for the `threads` strategy, the AF_UNIX
channel from the parent for `scm-rights` workers. `on_closed` lets a source learn that one of
its connections ended (scm-rights uses it for least-connections dispatch).

What a request costs the selector thread is what bounds the whole server, so the hot path is
kept short (`poller.py`): a connection stays registered, one-shot, and the pool thread that
answered re-arms it without waking the selector thread; connection sockets are non-blocking,
so neither recv nor a small response's send polls first or switches timeouts.

What a client can hold here is bounded (see `connection.py` for the per-connection bounds):

- A pool thread reads one chunk, then answers the complete requests in it one at a time, each
  sent before the next runs, and looks whether the peer has gone before each further one.
  Nothing more is read from that connection until all of them are answered. If that read
  filled the buffer, the thread reads again at once, at most READS_PER_TURN times, so a client
  that keeps sending cannot keep a thread: it goes back to the poller and queues behind the
  others.
- Connections waiting in the poller with an overdue request head get a 408 (or, with no
  byte received, just a close); idle ones are closed after the idle timeout.
- After an error response (a 408 among them) the connection lingers before its close, so that
  the close cannot reset the response away before the client has read it (connection.py): FIN
  at once; then each sweep reads and drops what the client sent (non-blocking, bounded) and
  closes the connection at the client's EOF, past LINGER_BYTES, or LINGER_S after the FIN.
  Nobody blocks for it -- neither the selector thread nor a pool thread (a client sending one
  bad request after another would otherwise hold a pool thread a second each).
- At most `max_connections` (default `App.limits.max_connections`) connections are served at
  once. At the cap, listening sources are taken out of the poller, so new connections wait
  in the kernel's listen backlog until one closes; a connection accepted in the same burst
  past the cap waits, unread, in arrival order, for a free slot. A source that is not a
  listening socket (the scm-rights channel) is never paused: its sender decides how many
  connections it hands over.
"""

from __future__ import annotations

import collections
import queue
import socket
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from . import log
from .app import App
from .connection import RECV_BYTES, HttpSession, LingerReads, peer_closed, send_nowait, send_parts_now
from .poller import Waiter, make_poller
from .protocol import MAX_HEAD_BYTES

SELECT_TIMEOUT_S = 0.5
SWEEP_INTERVAL_S = 0.25  # how often waiting connections are checked for deadlines
# Each request takes at least one buffered byte, so one read cannot hold more requests than this.
MAX_REQUESTS_PER_READ = RECV_BYTES + MAX_HEAD_BYTES
READS_PER_TURN = 4  # full reads one pool thread makes in a row on a connection (see _handle)


class _Conn(Waiter):
    __slots__ = ("session",)

    def __init__(self, sock: socket.socket, app: App) -> None:
        super().__init__(sock)
        self.session = HttpSession(app)


def _drop_input(sock: socket.socket, reads: LingerReads) -> bool:
    """Read and drop what a lingering connection's client sent (non-blocking, a few reads);
    False once the linger is over: its time or bytes used up, the client closed, or a failure."""
    for _ in range(READS_PER_TURN):
        step = reads.next()
        if step is None:
            return False
        try:
            data = sock.recv(step[1])
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not reads.took(data):
            return False
    return True


def _pool_worker(
    tasks: queue.SimpleQueue[Optional[_Conn]],
    serve: Callable[[_Conn], None],
    initializer: Optional[Callable[[], None]],
    stopping: threading.Event,
) -> None:
    """One pool thread: serve connections from `tasks` until None comes (forensics names this
    function as where an idle pool thread waits)."""
    if initializer is not None:
        initializer()
    while True:
        conn = tasks.get()
        if conn is None:
            return
        if stopping.is_set():
            conn.sock.close()  # queued when the reactor closed: not served, as an executor cancels
            continue
        try:
            serve(conn)
        except Exception:  # serve catches what a connection can cause; a bug must not shrink the pool
            log.get().exception("unexpected error in a pool thread; it goes on")


class _Pool:
    """`threads` threads serving the connections put in one queue.

    Why not ThreadPoolExecutor: each submit makes a Future and takes two locks and a semaphore,
    and each task sets a result that nobody reads, all of it on the path of every request; here
    the selector thread's part is one SimpleQueue.put. The threads are not daemons: at exit the
    interpreter waits for the requests in flight, as it does for an executor's threads (the
    server process bounds that wait)."""

    def __init__(self, threads: int, serve: Callable[[_Conn], None], initializer: Optional[Callable[[], None]]) -> None:
        self._tasks: queue.SimpleQueue[Optional[_Conn]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(
                target=_pool_worker,
                args=(self._tasks, serve, initializer, self._stopping),
                name="hangbench-worker_%d" % n,
            )
            for n in range(threads)
        ]
        self._started = False
        self.submit = self._tasks.put  # the hot path: no Python frame of ours in between

    def start(self) -> None:
        """Start the threads (once): from `Reactor.run`, so a reactor that never runs leaves none."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def shutdown(self) -> None:
        """Drop what is queued; each thread ends after its current connection."""
        self._stopping.set()
        if self._started:
            for _ in self._threads:
                self._tasks.put(None)


class _Source:
    __slots__ = ("accept", "fileobj", "pausable", "registered")

    def __init__(self, fileobj: socket.socket, accept: Callable[[], List[socket.socket]], pausable: bool) -> None:
        self.fileobj = fileobj
        self.accept = accept
        self.pausable = pausable
        self.registered = True


class _Stop:
    """What the poller returns for the stop fd."""


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
        portable: bool = False,
    ) -> None:
        """`portable`: use the `selectors` poller even where epoll is available (for tests)."""
        self._app = app
        self._idle_timeout_s = idle_timeout_s
        self._io_timeout_s = io_timeout_s
        self._on_closed = on_closed
        self._max_connections = app.limits.max_connections if max_connections is None else max_connections
        self._poller = make_poller(portable)
        self._pool = _Pool(threads, self._handle, thread_initializer)
        self._conns: Dict[int, _Conn] = {}  # fd -> every connection served (waiting or in the pool)
        self._sources: List[_Source] = []
        self._parked: Deque[socket.socket] = collections.deque()  # accepted past the cap
        self._served = 0  # connections adopted and not yet finished (waiting or in the pool)
        self._served_lock = threading.Lock()  # pool threads finish connections too
        self._last_sweep = 0.0
        # The lingering connections with what their linger may still read: pool threads append
        # (under the lock, which `close` takes too), the selector thread's sweep drains and
        # closes them.
        self._lingering: Deque[Tuple[LingerReads, _Conn]] = collections.deque()
        self._linger_lock = threading.Lock()
        self._closed = False
        # The server's stop fd (Strategy.stop_fd): readable once the process is asked to stop.
        self._stop = _Stop()
        if stop_fd is not None:
            self._poller.add(stop_fd, self._stop)

    def add_source(
        self, fileobj: socket.socket, accept: Callable[[], List[socket.socket]], pausable: Optional[bool] = None
    ) -> None:
        """Call `accept()` whenever `fileobj` is readable; it returns new connections (maybe none).

        A `pausable` source is left unread while the connection cap is reached (default: when
        `fileobj` is a listening socket)."""
        source = _Source(fileobj, accept, is_listening(fileobj) if pausable is None else pausable)
        self._sources.append(source)
        self._poller.add(fileobj.fileno(), source)

    @property
    def connections(self) -> int:
        """Connections being served now (parked ones not included)."""
        return self._served

    def run(self) -> None:
        """Serve until `stop_fd` is readable (or, without one, until an exception such as ServerStop)."""
        self._pool.start()
        while True:
            for data in self._poller.poll(SELECT_TIMEOUT_S):
                if isinstance(data, _Conn):
                    self._pool.submit(data)
                elif isinstance(data, _Source):
                    self._adopt(data.accept())
                elif data is self._stop:
                    return
            self._admit_parked()
            self._pace_sources()
            self._sweep()

    def close(self) -> None:
        self._pool.shutdown()
        for conn in list(self._conns.values()):
            if conn.waiting and conn.lock.acquire(blocking=False):
                try:
                    self._poller.disarm(conn)
                finally:
                    conn.lock.release()
                self._finish(conn)
        while self._parked:
            self._parked.popleft().close()
        with self._linger_lock:  # a pool thread still answering lingers no more: _linger closes
            self._closed = True
            lingering = list(self._lingering)
            self._lingering.clear()
        for _reads, conn in lingering:
            self._finish(conn)
        self._poller.close()

    def _adopt(self, socks: List[socket.socket]) -> None:
        for sock in socks:
            if self._served < self._max_connections and not self._parked:
                self._start(sock)
            else:
                self._parked.append(sock)

    def _start(self, sock: socket.socket) -> None:
        with self._served_lock:
            self._served += 1
        conn = _Conn(sock, self._app)
        try:
            sock.setblocking(False)  # for good: see send_parts_now
        except OSError:
            self._finish(conn)
            return
        self._conns[sock.fileno()] = conn
        if not self._poller.arm(conn, in_selector_thread=True):
            self._finish(conn)

    def _admit_parked(self) -> None:
        while self._parked and self._served < self._max_connections:
            self._start(self._parked.popleft())

    def _pace_sources(self) -> None:
        """Pause pausable sources at the cap, resume them below it (selector thread only)."""
        full = self._served + len(self._parked) >= self._max_connections
        for source in self._sources:
            if source.pausable and source.registered == full:
                if full:
                    self._poller.remove(source.fileobj.fileno())
                else:
                    self._poller.add(source.fileobj.fileno(), source)
                source.registered = not full

    def _handle(self, conn: _Conn) -> None:
        """In a pool thread: read what is ready, answer the requests it completes one at a time,
        then give the connection back to the poller.

        A read that filled the buffer probably left more behind (a client pipelining a lot): that
        is read at once, up to READS_PER_TURN reads, rather than after a trip through the poller.
        After a short read nothing more is tried: measured with wrk -c64, reading again on spec
        found the next request about half the time yet cost more than it saved (the failed recv
        and the GIL hand-offs around it), and the poller batches the wake-ups anyway."""
        session, sock = conn.session, conn.sock

        def gone() -> bool:
            return peer_closed(sock)

        try:
            for _ in range(READS_PER_TURN):
                try:
                    data = sock.recv(RECV_BYTES)
                except BlockingIOError:
                    break  # nothing (more) to read: wait in the poller
                session.receive(data)
                for _ in range(MAX_REQUESTS_PER_READ):
                    parts = session.next_response(gone)
                    if parts is None:
                        break
                    send_parts_now(sock, parts, self._io_timeout_s)
                if not session.open or len(data) < RECV_BYTES:
                    break  # a short read: the kernel had nothing more; the poller says when it has
        except OSError:
            session.open = False
        except Exception:
            log.get().exception("unexpected error while serving a connection; closing it")
            session.open = False
        if session.open and self._poller.arm(conn):
            return
        if session.linger:  # after an error response: let the client read it (connection.py)
            self._linger(conn)
            return
        self._finish(conn)

    def _sweep(self) -> None:
        """Close waiting connections whose request head is overdue (408) or that idled out."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_INTERVAL_S:
            return
        self._last_sweep = now
        idle_cutoff = now - self._idle_timeout_s
        for conn in list(self._conns.values()):
            if not conn.waiting:
                continue
            overdue = conn.session.head_overdue(now)
            if not overdue and conn.last_active >= idle_cutoff:
                continue
            if not conn.lock.acquire(blocking=False):
                continue  # a pool thread is re-arming it this instant: it is not idle
            try:
                if not conn.waiting:
                    continue
                self._poller.disarm(conn)
            finally:
                conn.lock.release()
            send_nowait(conn.sock, conn.session.timed_out() if overdue else b"")
            if conn.session.linger:  # a 408 went out
                self._linger(conn)
            else:
                self._finish(conn)
        for _ in range(len(self._lingering)):  # bounded: each lingering connection once
            reads, conn = self._lingering.popleft()
            if _drop_input(conn.sock, reads):
                self._lingering.append((reads, conn))
            else:
                self._finish(conn)

    def _linger(self, conn: _Conn) -> None:
        """FIN now; the sweep drops what comes and closes (above), unless the FIN cannot be sent."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish(conn)  # gone already
            return
        with self._linger_lock:
            if not self._closed:
                self._lingering.append((LingerReads(), conn))
                return
        self._finish(conn)  # the reactor has closed: nobody sweeps any more

    def _finish(self, conn: _Conn) -> None:
        self._poller.forget(conn)
        fd = conn.sock.fileno()
        if self._conns.get(fd) is conn:
            del self._conns[fd]
        conn.sock.close()
        with self._served_lock:
            self._served -= 1
            was_full = self._served + 1 + len(self._parked) >= self._max_connections
        if was_full:
            self._poller.wake()  # from a pool thread: let the selector resume accepting
        if self._on_closed is not None:
            self._on_closed()
