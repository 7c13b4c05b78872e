"""Readiness probes: has the server's application (not just the kernel) taken a connection?

Probes, from loosest to strictest:

* "tcp": a connect succeeds. The kernel completes it from the listen backlog, so this only
  proves that a socket listens.
* "accept" (default): after a GET /, the server answers, closes or resets the connection, or --
  seen in /proc/net/tcp, where a connection gets an inode only when accept() takes it -- its
  application accepted it. So a server that accepts and then hangs (the article's broken
  strategies) is ready, and its hangs get measured; one that never accepts is not-ready.
* "http": the server answers GET / with at least one line (any bytes count; see
  `AnswerCheck.is_http`).

Every attempt has its own socket timeout and the whole wait a deadline.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple, Union

from .procfs import tcp_entries
from .readyline import ReadyInfo

PROBES = ("accept", "http", "tcp")
_PROBE_ATTEMPT_MAX_S = 2.0
_PROBE_PAUSE_MAX_S = 0.2
_ACCEPT_POLL_S = 0.05
_MAX_ATTEMPTS = 100_000


@dataclass(frozen=True)
class AnswerCheck:
    """How the server first responded to a readiness probe."""

    probe: str  # "accept", "http" or "tcp"
    elapsed_s: float
    attempts: int
    outcome: str  # "answered" (bytes came back), "closed" (accepted, then closed or reset),
    #               "accepted" (the application accepted the connection) or "connected" (tcp)
    first_line: str = ""  # the first line of the answer, if any
    is_http: bool = False  # the answer began with an HTTP status line


def probe_until_answered(
    host: str, port: int, probe: str, timeout_s: float, check_alive: Callable[[], None]
) -> Union[AnswerCheck, str]:
    """Probe until the server responds (an AnswerCheck) or `timeout_s` passes (why not, in a
    sentence). `check_alive` is called before every attempt; it raises if the server died."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_error = "no attempt made (timeout %.1f s)" % timeout_s
    for attempt in range(1, _MAX_ATTEMPTS):
        check_alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        result, last_error = probe_once(host, port, probe, min(remaining, _PROBE_ATTEMPT_MAX_S))
        if result is not None:
            outcome, first_line = result
            return AnswerCheck(
                probe, time.monotonic() - started, attempt, outcome, first_line, first_line.startswith("HTTP/")
            )
        time.sleep(max(0.0, min(0.02 * attempt, _PROBE_PAUSE_MAX_S, deadline - time.monotonic())))
    return last_error


def port_is_free(host: str, port: int) -> bool:
    """True if `host:port` can be bound now (SO_REUSEADDR, so TIME_WAIT leftovers do not count:
    only a process still holding the port does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except (OSError, OverflowError):
            return False
    return True


def probe_once(host: str, port: int, probe: str, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    """((outcome, first line), "") on success, (None, why not) otherwise."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            if conn.getsockname() == conn.getpeername():
                # TCP simultaneous open: with nothing listening on a port of the ephemeral
                # range, connect() can pick that very port as its source and reach itself.
                return None, "ConnectionRefusedError: nothing listens (the probe connected to itself)"
            if probe == "tcp":
                return ("connected", ""), ""
            conn.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host.encode(), port))
            if probe == "http":
                return _await_answer(conn, timeout_s)
            return _await_accept(conn, port, timeout_s)
    except socket.timeout:
        return None, "no answer within %.1f s" % timeout_s
    except OSError as error:
        return None, "%s: %s" % (type(error).__name__, error.strerror or error)


def _await_answer(conn: socket.socket, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    data = _recv_first_line(conn)
    if not data:
        return None, "the server closed the connection without answering"
    return ("answered", _first_line(data)), ""


def _await_accept(conn: socket.socket, port: int, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    """Poll until the server answers, closes, resets, or has accepted the connection."""
    client_port = conn.getsockname()[1]
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / _ACCEPT_POLL_S) + 2):
        readable, _, _ = select.select([conn], [], [], _ACCEPT_POLL_S)
        if readable:
            try:
                data = _recv_first_line(conn)
            except ConnectionResetError:
                return ("closed", ""), ""
            return (("answered", _first_line(data)) if data else ("closed", "")), ""
        if _accepted(port, client_port):
            return ("accepted", ""), ""
        if time.monotonic() >= deadline:
            break
    return None, "connected, but the server did not accept the connection within %.1f s" % timeout_s


def _accepted(server_port: int, client_port: int) -> bool:
    """True if the server side of our connection has been accept()ed: in /proc/net/tcp a
    connection still in the listen queue has inode 0 (Linux; False elsewhere)."""
    for entry in tcp_entries(os.getpid()):
        if entry.local_port == server_port and entry.remote_port == client_port:
            return entry.inode != "0"
    return False


def _first_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")[:200]


@contextlib.contextmanager
def pending_request(ready: Optional[ReadyInfo]) -> Iterator[None]:
    """Hold a GET / open while the block runs, so that forensics of a server that does not
    answer show what it does with a request (the probes have given up by then)."""
    conn = None
    if ready is not None:
        try:
            conn = socket.create_connection((ready.host, ready.port), timeout=1.0)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (ready.host.encode(), ready.port))
            time.sleep(0.1)  # let the server pick it up
        except OSError:
            pass
    try:
        yield
    finally:
        if conn is not None:
            conn.close()


def _recv_first_line(conn: socket.socket) -> bytes:
    """Read until the first newline, EOF or 4 KiB. Not until EOF: a server that delays its FIN
    (the article's naive server does) still answers."""
    data = b""
    for _ in range(64):
        chunk = conn.recv(4096)
        data += chunk
        if not chunk or b"\n" in data or len(data) >= 4096:
            break
    return data
