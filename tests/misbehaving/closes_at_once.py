"""Misbehaves by closing every connection as soon as it is accepted, without a byte.

Expected: StartupFailure "not-ready" ("closed the connection without answering").
"""

import socket
import time

from harness.strategy import Strategy

LIFETIME_S = 120.0


class ClosesAtOnce(Strategy):
    name = "mis-closes-at-once"
    summary = "accepts and closes at once"
    broken = "never answers; every connection is closed immediately"

    def serve(self, listener, app, options):
        listener.settimeout(0.5)
        deadline = time.monotonic() + LIFETIME_S
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            conn.close()
