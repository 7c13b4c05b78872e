"""Misbehaves by flooding its output: two threads write about 50 MB/s each to stdout and
stderr for as long as it runs (bounded), and the main thread writes one stderr line per
request it answers -- so if the harness stopped draining the pipes, the server would block and
every request would hang.

Expected: the run completes normally, requests are answered, and what the harness keeps of the
output (logs, scratch space) stays bounded.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import LIFETIME_S, serve_http

from harness.server.strategy import Strategy

RATE_BYTES_S = 50_000_000  # per stream
BLOCK = (b"chatty output line, not a ready line: lorem ipsum dolor sit amet consectetur\n" * 840)[:65536]


def flood(fd: int, seconds: float = LIFETIME_S) -> None:
    """Write RATE_BYTES_S to `fd`, in 64 KiB blocks, until `seconds` have passed."""
    started = time.monotonic()
    written = 0
    for _ in range(int(seconds * RATE_BYTES_S / len(BLOCK)) + 1):
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            return
        ahead = written / RATE_BYTES_S - elapsed
        if ahead > 0:
            time.sleep(min(ahead, 0.1))
        try:
            written += os.write(fd, BLOCK)
        except OSError:
            return  # the harness is gone


def log_connection(conn) -> None:
    """One stderr line per connection, from the main thread: blocks it if stderr is not drained."""
    os.write(2, b"answered a connection\n")


class ChattyOutput(Strategy):
    name = "mis-chatty-output"
    summary = "answers, and writes ~100 MB/s to stdout and stderr"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it

    def serve(self, listener, app, options):
        for fd in (1, 2):
            threading.Thread(target=flood, args=(fd,), daemon=True).start()
        serve_http(listener, app, on_accept=log_connection)
