"""thread-per-conn: a new thread for every connection (socketserver.ThreadingMixIn), bounded.

Model: the naive baseline users write first, `socketserver.ThreadingTCPServer` or a
`while True: conn = accept(); Thread(target=serve, args=(conn,)).start()` loop. Each thread
serves its connection to the end with blocking I/O, keep-alive included, then exits.

The one change from the naive code: at most `--workers` threads at once (default 256). At the
cap the main thread stops accepting, so further connections wait in the kernel's listen backlog
instead of each costing a thread stack (ThreadingMixIn itself has no bound). Threads are daemon
threads: a stop does not wait for idle keep-alive clients.

When it wins: few clients, blocking work (sleeps release the GIL), no tuning at all. When it
loses: many connections (a thread and a stack each, thread start per connection), CPU work
(one process: the GIL), and more keep-alive clients than `--workers`, who wait for a free slot.
"""

from __future__ import annotations

import select
import socket
import threading

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy

WAKE_S = 0.5  # socketserver's poll_interval; the stop fd wakes the loop at once anyway
ACCEPT_ERROR_PAUSE_S = 0.1


class ThreadPerConn(Strategy):
    name = "thread-per-conn"
    summary = "a new thread per connection, at most --workers at once (socketserver.ThreadingMixIn, bounded)"
    default_workers = 256

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        slots = threading.BoundedSemaphore(options.workers)
        listener.setblocking(False)

        def run(conn: socket.socket) -> None:
            try:
                serve_blocking(conn, app, options.idle_timeout_s)
            finally:
                slots.release()

        while not self.stopping:
            if not slots.acquire(timeout=WAKE_S):
                continue  # at the cap: new connections wait in the backlog
            try:
                ready = select.select([listener.fileno(), self.stop_fd], [], [], WAKE_S)[0]
                conn, _addr = listener.accept() if listener.fileno() in ready else (None, None)
            except (BlockingIOError, InterruptedError):
                conn = None  # nothing queued after all
            except OSError as error:  # ECONNABORTED, EMFILE: pause rather than spin, then try again
                log.get().warning("accept failed: {}", error)
                self.wait_for_stop(ACCEPT_ERROR_PAUSE_S)
                conn = None
            if conn is None:
                slots.release()
                continue
            conn.setblocking(True)
            try:
                threading.Thread(target=run, args=(conn,), name="hangbench-conn", daemon=True).start()
            except RuntimeError as error:  # can't start new thread
                log.get().warning("cannot start a thread for a connection: {}", error)
                conn.close()
                slots.release()
