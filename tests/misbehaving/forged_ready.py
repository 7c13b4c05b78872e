"""Misbehaves by printing a forged ready line on stdout before the real one: while the plugin
is imported, i.e. before the server announces itself, so the harness reads the forgery first.

Which forgery is chosen by HANGBENCH_FORGED_READY (the server inherits the harness's
environment): "infinity" (default, `"port": Infinity`), "too-big" (port 70000), "string"
(`"port": "80"`), "no-port", "bad-host", "huge" (a 100 KB ready line) or "endless" (2 MiB
without a newline). If the harness were fooled it would go on to a server that works.

Expected: `not-ready`, with one sentence naming what is wrong; never a traceback.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import serve_http

from harness.server.strategy import Strategy

ENV = "HANGBENCH_FORGED_READY"
BASE = {"event": "listening", "host": "127.0.0.1", "pid": os.getpid()}
FORGERIES = {
    "infinity": dict(BASE, port=float("inf")),  # json.dumps writes Infinity
    "too-big": dict(BASE, port=70000),
    "string": dict(BASE, port="80"),
    "no-port": dict(BASE),
    "bad-host": dict(BASE, port=80, host="example.com"),
    "huge": dict(BASE, port=80, strategy="x" * 100_000),
}


def _forge() -> None:
    # Straight to fd 1: the server sends `print()`s of a loading plugin to stderr, but a hostile
    # plugin can still write to the file descriptor, and the harness must survive what it reads.
    kind = os.environ.get(ENV, "infinity")
    line = "{" * (2 << 20) if kind == "endless" else json.dumps(FORGERIES[kind]) + "\n"
    data = line.encode()
    while data:
        data = data[os.write(1, data) :]


_forge()


class ForgedReady(Strategy):
    name = "mis-forged-ready"
    summary = "prints a forged ready line before the real one"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "its first ready line is a forgery"

    def serve(self, listener, app, options):
        serve_http(listener, app)
