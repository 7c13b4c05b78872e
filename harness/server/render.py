"""Responses to bytes: the status line and headers every strategy sends, rendered once per second.

Apart from the parser (`protocol.py`, which re-exports `render` and `render_parts`) because it
shares nothing with it but the two record types, and because it is where a server's per-response
cost hides: a head depends only on the second (the Date header) and on a few fields of the
response, so the heads of the current second are kept and most responses reuse one.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:  # at run time the records are only read: no import cycle with protocol.py
    from .protocol import Request, Response

SERVER_NAME = b"hangbench"
# Heads kept per second: a server sends few distinct ones (a status, a body size and a
# Connection header each), and a client varying `bytes=` must not grow the table for ever.
MAX_CACHED_HEADS = 256

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
_CONNECTION_LINES = (b"", b"\r\nConnection: close", b"\r\nConnection: keep-alive")


class _DateCache:
    """The Date header changes once a second; formatting it per response is measurable waste.
    The response heads rendered within that second are kept with it (see `render_parts`)."""

    def __init__(self) -> None:
        self._second = -1
        self._current: Tuple[bytes, Dict[Tuple[object, ...], bytes]] = (b"", {})

    def current(self) -> Tuple[bytes, Dict[Tuple[object, ...], bytes]]:
        """This second's Date value and its heads, as one pair: threads see them change together."""
        now = int(time.time())
        if now != self._second:
            self._current = (formatdate(now, usegmt=True).encode(), {})
            self._second = now
        return self._current


_date = _DateCache()


def render(response: Response, request: Optional[Request], keep_alive: bool) -> bytes:
    """Serialise a response in one piece; `request` is None when answering a ProtocolError."""
    head, body = render_parts(response, request, keep_alive)
    return head + body if body else head


def render_parts(response: Response, request: Optional[Request], keep_alive: bool) -> Tuple[bytes, bytes]:
    """The head and the body to send (empty for HEAD), apart: joining them would copy a large
    body once more, and a server sending a 64 MiB response should hold it once, not twice.

    A head depends on the second (Date) and on a few fields only, so the heads of the current
    second are kept, by those fields, and most responses reuse one instead of rendering it."""
    if not keep_alive:
        connection = 1
    elif request is not None and request.version == "HTTP/1.0":
        connection = 2
    else:
        connection = 0
    date, heads = _date.current()
    key = (response.status, len(response.body), connection, response.content_type, response.extra_headers)
    try:
        head = heads.get(key)
    except TypeError:  # unhashable extra headers (not a tuple of pairs): render, keep nothing
        head = _render_head(response, date, connection)
    if head is None:
        head = _render_head(response, date, connection)
        if len(heads) < MAX_CACHED_HEADS:
            heads[key] = head
    if request is not None and request.method == "HEAD":
        return head, b""
    return head, response.body


def _render_head(response: Response, date: bytes, connection: int) -> bytes:
    reason = _REASONS.get(response.status, "Unknown").encode()
    lines = [
        b"HTTP/1.1 %d %s" % (response.status, reason),
        b"Server: " + SERVER_NAME,
        b"Date: " + date,
        b"Content-Type: " + response.content_type.encode("latin-1"),
        b"Content-Length: %d%s" % (len(response.body), _CONNECTION_LINES[connection]),
    ]
    for name, value in response.extra_headers:
        lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n"
