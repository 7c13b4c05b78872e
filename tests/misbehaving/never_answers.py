"""Misbehaves by holding the listener without ever accepting: connects succeed (the kernel's
backlog completes the handshake) but no byte ever comes back.

Expected: StartupFailure "not-ready" with the HTTP probe; a bare TCP probe succeeds.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import bounded_sleep

from harness.server.strategy import Strategy


class NeverAnswers(Strategy):
    name = "mis-never-answers"
    summary = "listens but never accepts"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "holds the listener and sleeps"

    def serve(self, listener, app, options):
        bounded_sleep()
