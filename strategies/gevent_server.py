"""gevent: gevent's StreamServer with a bounded greenlet pool.

Monkey-patching happens inside `serve`, so it is confined to this server process (the harness
and other strategies never see a patched stdlib). It is needed because the common handler is
plain synchronous code: a patched `time.sleep` yields to other greenlets. Threads stay
unpatched: nothing here starts threads, and patching them after `threading` was imported is
what gevent warns against.
"""

from __future__ import annotations

import socket

from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy


class GeventServer(Strategy):
    name = "gevent"
    summary = "gevent StreamServer, a greenlet per connection from a bounded pool; monkey-patched in the server only"
    default_workers = 1000  # greenlets are cheap; the pool bounds memory, not concurrency of work
    max_workers = 100_000

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        from gevent import monkey

        monkey.patch_all(thread=False, subprocess=False)
        import gevent
        from gevent.pool import Pool
        from gevent.server import StreamServer

        def handle(sock: socket.socket, _addr: object) -> None:
            serve_blocking(sock, app, options.idle_timeout_s)

        # The listener was made before patching: give its fd to a cooperative socket, or the
        # hub would block in a plain accept().
        from gevent import socket as gsocket

        cooperative = gsocket.socket(listener.family, listener.type, fileno=listener.detach())
        # The pool is also the connection cap: past it StreamServer stops accepting (backlog waits).
        server = StreamServer(cooperative, handle, spawn=Pool(min(options.workers, app.limits.max_connections)))
        # The stop handler only writes to the stop fd (it raises nothing into a greenlet, which
        # would kill the hub); a greenlet waits on that fd cooperatively and stops the server.
        gevent.spawn(lambda: (gsocket.wait_read(self.stop_fd), server.stop(timeout=2)))
        server.serve_forever()
