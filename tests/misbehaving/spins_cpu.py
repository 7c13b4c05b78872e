"""Misbehaves by burning CPU: a thread spins in pure Python (bounded) while the main thread
answers requests, slowly, as it must win the GIL from the spinner.

Expected: server CPU close to one core; forensics show a thread "running" in this file.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import LIFETIME_S, serve_http

from harness.server.strategy import Strategy


def spin(seconds: float = LIFETIME_S) -> int:
    deadline = time.monotonic() + seconds
    laps = 0
    while time.monotonic() < deadline:
        laps += 1
    return laps


class SpinsCpu(Strategy):
    name = "mis-spins-cpu"
    summary = "answers, while a thread spins the CPU"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "burns a core for nothing"

    def serve(self, listener, app, options):
        threading.Thread(target=spin, name="spinner", daemon=True).start()
        serve_http(listener, app)
