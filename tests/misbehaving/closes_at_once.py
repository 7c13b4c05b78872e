"""Misbehaves by closing every connection as soon as it is accepted, without a byte.

Expected: ready (the readiness probe sees the close); every request ends `closed` or `reset`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import accepted

from harness.server.strategy import Strategy


class ClosesAtOnce(Strategy):
    name = "mis-closes-at-once"
    summary = "accepts and closes at once"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "never answers; every connection is closed immediately"

    def serve(self, listener, app, options):
        for conn in accepted(listener):
            conn.close()
