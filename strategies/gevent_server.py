"""gevent: gevent's StreamServer with a bounded greenlet pool.

Monkey-patching happens inside `serve`, so it is confined to this server process (the harness
and other strategies never see a patched stdlib). It is needed because the common handler is
plain synchronous code: a patched `time.sleep` yields to other greenlets. Threads stay
unpatched: nothing here starts threads, and patching them after `threading` was imported is
what gevent warns against.
"""

from __future__ import annotations

import signal
import socket

from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy


class GeventServer(Strategy):
    name = "gevent"
    summary = "gevent StreamServer, one greenlet per connection from a bounded pool; monkey-patched in the server process only"
    default_workers = 1000  # greenlets are cheap; the pool bounds memory, not concurrency of work

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
        server = StreamServer(cooperative, handle, spawn=Pool(options.workers))
        # gevent's own signal handling: a Python-level handler raising in whichever greenlet
        # runs would kill the hub instead of stopping the server.
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, server.stop, timeout=2)
        server.serve_forever()
