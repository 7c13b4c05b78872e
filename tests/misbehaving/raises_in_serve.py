"""Misbehaves in serve: raises at once, after the server printed its ready line.

Expected: the server exits non-zero shortly after ready -> StartupFailure "crashed".
"""

from harness.server.strategy import Strategy


class RaisesInServe(Strategy):
    name = "mis-raises-in-serve"
    summary = "raises RuntimeError in serve"
    broken = "serve raises at once"

    def serve(self, listener, app, options):
        raise RuntimeError("misbehaving plugin: serve() raised on purpose")
