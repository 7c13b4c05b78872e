"""prefork-accept: pre-forked workers, each blocking in accept() on the one shared listener.

Model (gunicorn's `sync` worker, Apache prefork, the classic answer to the article's question):
the listener is made before the workers and inherited by them; each worker waits in select()
on it (and on its channel to the parent), accepts, serves that one connection to its end with
blocking I/O, and only then accepts again. No fd ever crosses a process boundary, so nothing
can hang on a lingering reference: a worker's close() is the connection's only close.

One connection at a time per worker, like gunicorn sync. gunicorn sync never keeps a connection
alive (it always answers `Connection: close`), because an idle keep-alive client would pin a
worker while others wait in the backlog. Here keep-alive is honoured only while nobody waits:
before each response the worker looks whether the listener has a connection queued, and if so
answers `Connection: close` and goes to accept it. A client that keeps a connection open and
idle still pins its worker until `--idle-timeout`; that is the model's known cost.

The listener is non-blocking and woken by select() in every worker, so several workers wake for
one connection and all but one get EAGAIN (the thundering herd, as in gunicorn sync).
Workers default to 2 x cores, gunicorn's usual advice for sync workers.

When it wins: CPU-bound requests (each worker is its own process: no GIL contention) and
`Connection: close` traffic. When it loses: slow or idle clients, and more concurrent clients
than workers, who queue in the backlog.
"""

from __future__ import annotations

import dataclasses
import os
import select
import socket
from typing import Callable, Optional

from harness.server import log
from harness.server.app import App
from harness.server.connection import HttpSession, Parts, serve_blocking
from harness.server.protocol import Event, Request, Response
from harness.server.strategy import ServeOptions, Strategy

WAKE_S = 1.0  # bounds each select(); the channel's EOF wakes a worker at once
WATCH_S = 1.0
ACCEPT_ERROR_PAUSE_S = 0.1  # after EMFILE and the like: do not spin


class YieldingSession(HttpSession):
    """Keeps a connection alive only while no other connection waits in the listen queue."""

    __slots__ = ("contended",)

    def __init__(self, app: App, contended: Callable[[], bool]) -> None:
        super().__init__(app)
        self.contended = contended

    def answer(self, event: Event, response: Optional[Response] = None) -> Parts:
        if isinstance(event, Request) and event.keep_alive and self.contended():
            event = dataclasses.replace(event, keep_alive=False)  # answered with Connection: close
        return super().answer(event, response)


def worker_main(channel: socket.socket, listener: socket.socket, app: App, options: ServeOptions) -> None:
    listener.setblocking(False)

    def contended() -> bool:
        return bool(select.select([listener], [], [], 0)[0])

    while True:  # ends on EOF from the parent (or SIGTERM, then SIGKILL, from the base)
        ready = select.select([listener, channel], [], [], WAKE_S)[0]
        if channel in ready:
            return  # the parent never writes: readable means it closed the channel
        if not ready:
            continue
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue  # another worker took it
        except OSError as error:  # ECONNABORTED, EMFILE: pause, then accept again
            log.get().warning("worker {}: accept failed: {}", os.getpid(), error)
            select.select([channel], [], [], ACCEPT_ERROR_PAUSE_S)
            continue
        serve_blocking(conn, app, options.idle_timeout_s, YieldingSession(app, contended))


class PreforkAccept(Strategy):
    name = "prefork-accept"
    summary = "pre-forked workers blocking in accept() on one shared listener, one connection at a time (gunicorn sync)"
    default_workers = 2 * (os.cpu_count() or 1)

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        # A dup: the base closes the listener's own fd number in forked workers.
        shared = listener.dup()
        try:
            workers = self.start_processes(options.workers, worker_main, (shared, app, options), channel=True)
        finally:
            shared.close()
        while not self.wait_for_stop(WATCH_S):
            if not any(worker.process.is_alive() for worker in workers):
                log.get().error("every prefork-accept worker has died; stopping")
                return
