"""Misbehaves by leaking a file descriptor per connection (a dup of the socket, never closed).

It answers correctly, but the client never sees the server's FIN on a connection whose
duplicate is still open -- the mechanism behind the article's "server keeps a reference"
hang -- and the server's fd count grows with each connection (bounded at MAX_LEAKED).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import serve_http

from harness.server.strategy import Strategy

MAX_LEAKED = 1000


class LeaksFds(Strategy):
    name = "mis-leaks-fds"
    summary = "answers, and leaks one fd per connection"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "keeps a duplicate of every accepted socket open"

    def __init__(self):
        self.leaked = []

    def serve(self, listener, app, options):
        def leak(conn):
            if len(self.leaked) < MAX_LEAKED:
                self.leaked.append(os.dup(conn.fileno()))

        serve_http(listener, app, on_accept=leak)
