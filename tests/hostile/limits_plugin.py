"""Test plugin (not a test module): built-in strategies run with tight connection limits.

The server's command line has no flags for `harness.server.app.Limits` yet, so the hostile-client
tests name these classes instead, e.g. `--strategy tests/hostile/limits_plugin.py:ThreadsShortHead`.
Each is the built-in strategy, unchanged, serving an App whose limits are replaced.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from harness.server.app import App
from strategies.gevent_server import GeventServer
from strategies.threads import Threads

SHORT_HEAD_TIMEOUT_S = 1.0
SMALL_CAP = 4


def _limited(app: App, **limits: Any) -> App:
    return dataclasses.replace(app, limits=dataclasses.replace(app.limits, **limits).validated())


class ThreadsShortHead(Threads):
    name = "test-threads-short-head"
    summary = "threads, request heads due within %g s" % SHORT_HEAD_TIMEOUT_S

    def serve(self, listener: socket.socket, app: App, options: object) -> None:
        super().serve(listener, _limited(app, head_timeout_s=SHORT_HEAD_TIMEOUT_S), options)  # type: ignore[arg-type]


class GeventShortHead(GeventServer):
    name = "test-gevent-short-head"
    summary = "gevent, request heads due within %g s" % SHORT_HEAD_TIMEOUT_S

    def serve(self, listener: socket.socket, app: App, options: object) -> None:
        super().serve(listener, _limited(app, head_timeout_s=SHORT_HEAD_TIMEOUT_S), options)  # type: ignore[arg-type]


class ThreadsSmallCap(Threads):
    name = "test-threads-small-cap"
    summary = "threads, at most %d connections served at once" % SMALL_CAP

    def serve(self, listener: socket.socket, app: App, options: object) -> None:
        super().serve(listener, _limited(app, max_connections=SMALL_CAP), options)  # type: ignore[arg-type]
