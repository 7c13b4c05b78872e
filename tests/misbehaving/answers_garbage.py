"""Misbehaves on the wire: answers every connection with bytes that are not HTTP, then closes.

Expected: the readiness probe gets an answer that is not HTTP (AnswerCheck.is_http False);
clients count protocol errors.
"""

import socket
import time

from harness.strategy import Strategy

LIFETIME_S = 120.0
GARBAGE = b"\x00\xffTHIS IS NOT HTTP\r\n\r\n"


class AnswersGarbage(Strategy):
    name = "mis-answers-garbage"
    summary = "answers with non-HTTP bytes"
    broken = "its responses are not HTTP"

    def serve(self, listener, app, options):
        listener.settimeout(0.5)
        deadline = time.monotonic() + LIFETIME_S
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5.0)
                try:
                    conn.recv(65536)
                    conn.sendall(GARBAGE)
                except OSError:
                    pass
