"""threads: a bounded thread pool behind a selector (gunicorn's gthread model).

The main thread accepts and watches idle keep-alive connections; a pool of `--workers` threads
handles connections that have bytes ready. See `harness/server/reactor.py` for why the pool bounds the
work in flight rather than the number of clients.
"""

from __future__ import annotations

import socket
from typing import List

from harness.server.app import App
from harness.server.reactor import Reactor
from harness.server.strategy import ServeOptions, Strategy

ACCEPTS_PER_WAKEUP = 64  # bounds one accept burst so idle connections are not starved


def accept_ready(listener: socket.socket) -> List[socket.socket]:
    """Accept what the (non-blocking) listener has queued, up to ACCEPTS_PER_WAKEUP."""
    accepted = []
    for _ in range(ACCEPTS_PER_WAKEUP):
        try:
            sock, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break  # e.g. ECONNABORTED or EMFILE: try again at the next wake-up
        accepted.append(sock)
    return accepted


class Threads(Strategy):
    name = "threads"
    summary = "bounded thread pool; a selector holds idle keep-alive connections (gthread model)"
    default_workers = 32

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        listener.setblocking(False)
        reactor = Reactor(app, options.workers, options.idle_timeout_s, options.io_timeout_s, stop_fd=self.stop_fd)
        reactor.add_source(listener, lambda: accept_ready(listener))
        try:
            reactor.run()
        finally:
            reactor.close()
