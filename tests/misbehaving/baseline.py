"""Control for the misbehaving suite: a serial server that answers every request correctly.

If this one fails under the supervisor, the supervisor (or the server process) is at fault,
not the strategy.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import serve_http

from harness.server.strategy import Strategy


class Baseline(Strategy):
    name = "mis-baseline"
    summary = "control: one connection at a time, answers correctly"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it

    def serve(self, listener, app, options):
        serve_http(listener, app)
