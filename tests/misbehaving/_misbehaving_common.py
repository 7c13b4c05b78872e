"""Shared plumbing for the misbehaving plugins: a plain serial HTTP responder with bounds.

Not a plugin (no Strategy subclass). The plugins are loaded by file path, so they put this
directory on sys.path to import it. Everything here is bounded: the accept loop by a lifetime
and a connection count, every socket operation by a timeout, so that a plugin process whose
harness died still ends by itself.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Iterator, Optional

from harness.server.app import App, handle
from harness.server.protocol import ProtocolError, RequestParser, render

LIFETIME_S = 120.0  # no misbehaving server lives longer than this, whatever happens
IO_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 10_000_000  # the lifetime, not this, is the bound that matters
MAX_READS_PER_CONNECTION = 1_000


def bounded_sleep(seconds: float = LIFETIME_S) -> None:
    """Sleep in short slices (each one interruptible by the server's SIGTERM handler)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds * 2) + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(0.5, remaining))


def accepted(listener: socket.socket, lifetime_s: float = LIFETIME_S) -> Iterator[socket.socket]:
    """Accepted connections, one at a time, until `lifetime_s` has passed."""
    listener.settimeout(0.5)
    deadline = time.monotonic() + lifetime_s
    for _ in range(MAX_CONNECTIONS):
        if time.monotonic() >= deadline:
            return
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        yield conn


def serve_http(
    listener: socket.socket,
    app: App,
    on_accept: Optional[Callable[[socket.socket], None]] = None,
    lifetime_s: float = LIFETIME_S,
) -> None:
    """Accept and answer one connection at a time until `lifetime_s` has passed."""
    for conn in accepted(listener, lifetime_s):
        with conn:
            conn.settimeout(IO_TIMEOUT_S)
            if on_accept is not None:
                on_accept(conn)
            try:
                answer(conn, app)
            except OSError:
                pass  # the client went away or timed out; next connection


def answer(conn: socket.socket, app: App) -> None:
    """Answer the requests on one connection until the client closes or asks to."""
    parser = RequestParser()
    for _ in range(MAX_READS_PER_CONNECTION):
        data = conn.recv(65536)
        if not data:
            return
        for event in parser.feed(data):
            if isinstance(event, ProtocolError):
                conn.sendall(render(event.response(), None, False))
                return
            conn.sendall(render(handle(app, event), event, event.keep_alive))
            if not event.keep_alive:
                return
