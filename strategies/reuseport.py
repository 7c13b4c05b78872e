"""reuseport: pre-forked workers, each with its own SO_REUSEPORT listener and its own event loop.

Model (nginx `listen ... reuseport`, uvicorn/hypercorn `--workers` with SO_REUSEPORT): every
worker owns one listening socket bound to the same address; the kernel puts each new connection
in the accept queue of one socket of the group (a hash of the 4-tuple), so there is no shared
accept queue, no thundering herd and no hand-off. Each worker serves its connections inline on
one event loop (uvloop when installed, `harness/server/inline_loop.py`).

No connection may be stranded in a queue nobody accepts from. Linux adds every SO_REUSEPORT
listener on the address to the group, so the server process's own listener cannot simply stay
open as a reservation: it would get its share of connections and never accept them. Instead it
*becomes worker 0's socket*: the parent sets SO_REUSEPORT on it (so that the others may join),
hands worker 0 a dup of it (which also drains what clients queued before the workers started),
binds one new socket per further worker, hands each to its worker and closes its own copies.
Every socket of the group is then held by exactly one worker; when a worker dies its socket
leaves the group with it (its queued connections are reset, not left waiting), and the parent
stops once no worker is left.

When it wins: many short requests over many connections, where per-connection cost dominates:
the kernel balances connections, each core runs its own loop with no cross-process traffic.
When it loses: CPU work or sleeps block a worker's loop; balancing is per connection, not per
request, so a few long keep-alive connections can pile onto one worker. Linux only (elsewhere
SO_REUSEPORT does not balance, or is missing): refused in `check_options`.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Tuple

from harness.server import log
from harness.server.app import App
from harness.server.inline_loop import serve_inline
from harness.server.strategy import ServeOptions, Strategy, StrategyError

WATCH_S = 1.0  # how often the parent looks whether its workers are alive (the stop fd wakes it at once)


def reuseport_listener(address: Tuple[Any, ...], family: int, backlog: int) -> socket.socket:
    """A new listening socket on `address`, joined to its SO_REUSEPORT group."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as make_listener: asyncio's TCP_NODELAY
    try:
        # SO_REUSEADDR as on the server's own listener: else TIME_WAIT connections on the port,
        # which carry it, make bind() fail with EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def worker_main(channel: socket.socket, own: socket.socket, app: App, options: ServeOptions) -> None:
    # The parent never writes on the channel: it becomes readable (EOF) when the parent stops.
    serve_inline(own, app, options.idle_timeout_s, options.backlog, channel.fileno())


class ReusePort(Strategy):
    name = "reuseport"
    summary = "pre-forked workers, each with its own SO_REUSEPORT listener and event loop (nginx / uvicorn --workers)"
    default_workers = os.cpu_count() or 2  # one loop per core, as nginx's `worker_processes auto`

    def check_options(self, options: ServeOptions) -> None:
        super().check_options(options)
        if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
            raise StrategyError(
                "strategy 'reuseport' needs Linux, whose SO_REUSEPORT balances connections (this is %s)" % sys.platform
            )

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        address = listener.getsockname()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # lets the workers' sockets join it
        workers = []
        for index in range(options.workers):
            own = listener.dup() if index == 0 else reuseport_listener(address, listener.family, options.backlog)
            try:
                workers += self.start_processes(1, worker_main, (own, app, options), channel=True)
            finally:
                own.close()  # the worker holds it now; a later fork must not inherit it
        listener.close()  # worker 0 holds it: no socket of the group is left without an acceptor
        while not self.wait_for_stop(WATCH_S):
            alive = sum(1 for worker in workers if worker.process.is_alive())
            if not alive:
                log.get().error("every reuseport worker has died; stopping")
                return
