"""fork-per-connection: an example hangbench strategy plugin, the classic Unix server.

The main process accepts; for each connection it forks a child (`Strategy.fork`) that serves
that one connection with `harness.server.connection.serve_blocking` and exits. The parent
closes its copy of the connection at once, so the child holds the only reference and its close
really ends the connection (no lingering reference, unlike the article's pool server).

What the base class does for it (harness/server/base.py), so none of it is written here:

- the child closes the fds it must not hold (the listener, the stop pipe), resets the stop
  signals to "die on SIGTERM", and leaves with `os._exit` (never the parent's clean-up);
- the stop signals are blocked across `fork()`, so a stop lands neither between the fork and
  the bookkeeping (a child nobody knows about) nor in the child before its handlers are reset;
- when `serve` returns, the live children are SIGTERMed, given a grace period, SIGKILLed and
  reaped; `live_children()` reaps finished ones without blocking (only our own pids).

What it does itself: it waits on the listener and the base's stop fd together, so a stop wakes
it at once; `--workers` caps the live children, and at the cap new connections wait in the
listen backlog.
"""

from __future__ import annotations

import select
import socket

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy

POLL_S = 0.2  # how often the parent wakes up to reap when no client arrives

__all__ = ["ForkPerConnection"]


class ForkPerConnection(Strategy):
    name = "fork-per-connection"
    summary = "main process accepts and os.fork()s one child per connection (example plugin)"
    default_workers = 256  # here: the most children alive at once

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        listener.setblocking(False)
        while not self.stopping:
            if self.live_children() >= options.workers:
                self.wait_for_stop(POLL_S / 20)  # at the cap: new connections wait in the backlog
                continue
            if listener.fileno() not in select.select([listener.fileno(), self.stop_fd], [], [], POLL_S)[0]:
                continue
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another waiter took it, or the client gave up
            except OSError as error:  # ECONNABORTED, EMFILE: try again at the next poll
                log.get().warning("accept failed: {}", error)
                self.wait_for_stop(POLL_S / 20)
                continue
            try:
                self.fork(serve_blocking, conn, app, options.idle_timeout_s)
            except OSError as error:  # EAGAIN/ENOMEM: drop this connection, keep serving
                log.get().error("fork failed: {}", error)
            finally:
                conn.close()  # the child now holds the only reference
