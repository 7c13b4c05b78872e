"""Misbehaves on the wire: answers every connection with bytes that are not HTTP, then closes.

Expected: the readiness probe gets an answer that is not HTTP (AnswerCheck.is_http False);
clients count protocol errors.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import IO_TIMEOUT_S, accepted

from harness.server.strategy import Strategy

GARBAGE = b"\x00\xffTHIS IS NOT HTTP\r\n\r\n"


class AnswersGarbage(Strategy):
    name = "mis-answers-garbage"
    summary = "answers with non-HTTP bytes"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "its responses are not HTTP"

    def serve(self, listener, app, options):
        for conn in accepted(listener):
            with conn:
                conn.settimeout(IO_TIMEOUT_S)
                try:
                    conn.recv(65536)
                    conn.sendall(GARBAGE)
                except OSError:
                    pass
