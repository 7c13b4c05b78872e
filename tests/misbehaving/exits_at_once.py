"""Misbehaves in serve: returns at once without serving, so the server exits (code 0).

Expected: StartupFailure "crashed" (it exited after its ready line, before answering).
"""

from harness.server.strategy import Strategy


class ExitsAtOnce(Strategy):
    name = "mis-exits-at-once"
    summary = "serve returns at once"
    broken = "serve returns immediately"

    def serve(self, listener, app, options):
        return None
