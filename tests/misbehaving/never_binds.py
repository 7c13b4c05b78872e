"""Misbehaves by not listening: closes the listener it was given, then sleeps (bounded).

The server process binds and prints the ready line before calling serve, so "never binds" is
modelled as "stops listening": connects are refused. Expected: StartupFailure "not-ready".
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import bounded_sleep

from harness.server.strategy import Strategy


class NeverBinds(Strategy):
    name = "mis-never-binds"
    summary = "closes its listener and sleeps"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "nothing listens on the announced port"

    def serve(self, listener, app, options):
        listener.close()
        bounded_sleep()
