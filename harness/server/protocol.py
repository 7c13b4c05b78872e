"""Sans-I/O HTTP/1.1 for the server side: bytes in, requests out; responses to bytes.

Every strategy drives the same parser, whatever its I/O model (blocking thread, greenlet,
asyncio, pool worker), so a difference between strategies is never a difference in HTTP
handling. The parser does no I/O at all, which lets the tests feed it any byte sequence
(partial reads, pipelining, garbage) without a socket.

Why not h11 or httptools: the server side must import with the standard library alone so that
it runs under any interpreter from 3.8 up (the interpreter matrix), and the subset a benchmark
server needs is small. `tests/test_protocol_bench.py` measures this parser against h11; see
README "Design choices" for the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import List, Optional, Tuple, Union

MAX_HEAD_BYTES = 8 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
SERVER_NAME = b"hangbench"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Request:
    """One parsed request head; the body, if any, has been consumed and discarded."""

    method: str
    target: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    headers: Tuple[Tuple[str, str], ...]  # names lower-cased, in arrival order
    keep_alive: bool

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    extra_headers: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProtocolError:
    """A request the parser refused. The connection must close after its response is sent."""

    status: int
    reason: str

    def response(self) -> Response:
        return Response(self.status, (self.reason + "\n").encode())


Event = Union[Request, ProtocolError]


@dataclass
class RequestParser:
    """Feed it bytes as they arrive; it returns the requests completed so far, in order.

    After a ProtocolError the parser is dead: the caller answers the error and closes.
    """

    max_head: int = MAX_HEAD_BYTES
    _buffer: bytearray = field(default_factory=bytearray)
    _body_left: int = 0
    _failed: bool = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def idle(self) -> bool:
        """True when no partial request is buffered (a close now loses nothing)."""
        return not self._buffer and not self._body_left

    def feed(self, data: bytes) -> List[Event]:
        if self._failed:
            return []
        self._buffer += data
        events: List[Event] = []
        while True:
            if self._body_left:
                taken = min(self._body_left, len(self._buffer))
                del self._buffer[:taken]
                self._body_left -= taken
                if self._body_left:
                    return events
            event = self._next_head()
            if event is None:
                return events
            events.append(event)
            if isinstance(event, ProtocolError):
                self._failed = True
                self._buffer.clear()
                return events

    def _next_head(self) -> Optional[Event]:
        # Tolerate stray CRLFs between requests (RFC 9112 section 2.2).
        while self._buffer[:2] == b"\r\n":
            del self._buffer[:2]
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > self.max_head:
                return ProtocolError(431, "request head larger than %d bytes" % self.max_head)
            if self._buffer and not _plausible_start(bytes(self._buffer[:16])):
                return ProtocolError(400, "not an HTTP request")
            return None
        if end + 4 > self.max_head:
            return ProtocolError(431, "request head larger than %d bytes" % self.max_head)
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        try:
            request, body_length = _parse_head(head)
        except _BadRequest as error:
            return ProtocolError(error.status, str(error))
        self._body_left = body_length
        return request


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _plausible_start(prefix: bytes) -> bool:
    """Reject garbage early instead of buffering 8 KiB of it first."""
    prefix = prefix.lstrip(b"\r\n")  # a stray CRLF may arrive split across reads
    method = prefix.split(b" ", 1)[0]
    return all(byte in _TOKEN_CHARS for byte in method)


def _is_token(text: str) -> bool:
    return all(ord(c) < 128 and ord(c) in _TOKEN_CHARS for c in text)


def _parse_head(head: bytes) -> Tuple[Request, int]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise _BadRequest("undecodable request head")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if not _is_token(method):
        raise _BadRequest("malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/"):
            raise _BadRequest("unsupported HTTP version", 505)
        raise _BadRequest("malformed request line")
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not _is_token(name):
            raise _BadRequest("malformed header line")
        headers.append((name.lower(), value.strip(" \t")))
    request = Request(method, target, version, tuple(headers), _keep_alive(version, headers))
    return request, _body_length(headers)


def _keep_alive(version: str, headers: List[Tuple[str, str]]) -> bool:
    tokens = set()
    for name, value in headers:
        if name == "connection":
            tokens.update(token.strip().lower() for token in value.split(","))
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


def _body_length(headers: List[Tuple[str, str]]) -> int:
    lengths = {value for name, value in headers if name == "content-length"}
    if any(name == "transfer-encoding" for name, _ in headers):
        raise _BadRequest("Transfer-Encoding is not supported; send Content-Length", 501)
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise _BadRequest("conflicting Content-Length headers")
    value = lengths.pop()
    # isdigit() alone admits non-ASCII digits such as "\xb2"; 18 digits bound int() too.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise _BadRequest("malformed Content-Length")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise _BadRequest("request body larger than %d bytes" % MAX_BODY_BYTES, 413)
    return length


class _DateCache:
    """The Date header changes once a second; formatting it per response is measurable waste."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._value = formatdate(now, usegmt=True).encode()
            self._second = now
        return self._value


_date = _DateCache()


def render(response: Response, request: Optional[Request], keep_alive: bool) -> bytes:
    """Serialise a response; `request` is None when answering a ProtocolError."""
    version = b"HTTP/1.1"
    reason = _REASONS.get(response.status, "Unknown").encode()
    head_only = request is not None and request.method == "HEAD"
    lines = [
        b"%s %d %s" % (version, response.status, reason),
        b"Server: " + SERVER_NAME,
        b"Date: " + _date.get(),
        b"Content-Type: " + response.content_type.encode("latin-1"),
        b"Content-Length: %d" % len(response.body),
    ]
    if not keep_alive:
        lines.append(b"Connection: close")
    elif request is not None and request.version == "HTTP/1.0":
        lines.append(b"Connection: keep-alive")
    for name, value in response.extra_headers:
        lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return head if head_only else head + response.body
