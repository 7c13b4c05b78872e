"""Misbehaves by waiting for a request that is never complete: after accepting, it reads
until it sees a blank line that ends a request head *and then keeps reading* for a body the
client never sends (bounded by a 120 s timeout), so every client waits for ever.

Expected: StartupFailure "not-ready"; forensics name recv in `wait_for_body` of this file.
"""

import socket
import time

from harness.server.strategy import Strategy

LIFETIME_S = 120.0


def wait_for_body(conn):
    return conn.recv(65536)  # the client sent its whole request; this waits for ever


class StuckInRecv(Strategy):
    name = "mis-stuck-in-recv"
    summary = "accepts, then blocks in recv for a body that never comes"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "waits for bytes the client will never send"

    def serve(self, listener, app, options):
        listener.settimeout(0.5)
        deadline = time.monotonic() + LIFETIME_S
        held = []
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            held.append(conn)
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                conn.recv(65536)  # the request head
                wait_for_body(conn)
            except OSError:
                pass
