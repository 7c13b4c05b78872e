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

import re
from dataclasses import dataclass, field
from typing import List, Optional, Set, Tuple, Union

# Rendering lives in render.py; these names stay importable from here, where callers find them.
from .render import SERVER_NAME as SERVER_NAME
from .render import render as render
from .render import render_parts as render_parts

MAX_HEAD_BYTES = 8 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
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
    """HTTP/1.1 request heads from a byte stream, pulled one event at a time (the h11 shape).

    `receive_data(bytes)` buffers what arrived; `next_event()` returns the next complete
    `Request`, a `ProtocolError`, or None when more bytes are needed. Pulling one event at a
    time is what lets a server answer pipelined requests one by one and stop reading while a
    response is unsent: the parser holds unparsed bytes only, never a queue of parsed
    requests. `feed(bytes)` does both and returns every event completed so far (tests, benchmarks);
    `parse_whole(bytes)` is the shortcut for a read holding exactly one whole head.
    Request bodies (Content-Length only) are consumed and discarded as they arrive.

    Error contract. Each input below yields one `ProtocolError` with this status, after the
    requests that came before it; the parser is then dead (`failed`): it ignores all further
    input, and the caller must send `error.response()` with `Connection: close` (`render(...,
    None, keep_alive=False)`) and then close the connection, because the byte stream can no
    longer be framed.

    - 400: the first bytes are not a token followed by a space (binary, a TLS ClientHello);
      a request line that is not exactly `METHOD SP target SP version`; a method that is not a
      token; a version that is not `HTTP/x.y`; a target containing a control character or HTAB;
      a header line without a colon, with a name that is not a token, or folded (obs-fold);
      NUL, a bare CR, a bare LF or any control character other than HTAB anywhere in the head
      (RFC 9110 section 5.5, RFC 9112 section 2.2); a Content-Length that is not 1 to 18 ASCII
      digits, or two different Content-Length values; an HTTP/1.1 request without Host, any
      request with more than one Host, or a Host value with a character a uri-host[:port]
      cannot hold (RFC 9112 section 3.2).
    - 431: a head (request line and headers) longer than `max_head` bytes, whether or not it is
      complete yet.
    - 413: a Content-Length above MAX_BODY_BYTES.
    - 501: any Transfer-Encoding header (chunked bodies are not supported).
    - 505: an `HTTP/x.y` version other than 1.0 and 1.1 (the HTTP/2 preface included).

    When one head has several faults, the first check that fails decides: the request line,
    then the characters of the head, the header lines, the body framing, and Host last.
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

    @property
    def in_head(self) -> bool:
        """True when some bytes of a request head have arrived but not all of it (after
        `next_event()` returned None): the state a header-read deadline applies to."""
        return bool(self._buffer) and not self._body_left and not self._failed

    def receive_data(self, data: bytes) -> None:
        """Buffer `data`; nothing is parsed until `next_event()`."""
        if not self._failed:
            self._buffer += data

    def next_event(self) -> Optional[Event]:
        """The next complete request or error, or None if more bytes are needed (or dead)."""
        if self._failed:
            return None
        if self._body_left:
            taken = min(self._body_left, len(self._buffer))
            del self._buffer[:taken]
            self._body_left -= taken
            if self._body_left:
                return None
        event = self._next_head()
        if isinstance(event, ProtocolError):
            self._failed = True
            self._buffer.clear()
        return event

    def feed(self, data: bytes) -> List[Event]:
        """`receive_data(data)`, then every event now complete, in order."""
        self.receive_data(data)
        events: List[Event] = []
        while True:
            event = self.next_event()
            if event is None:
                return events
            events.append(event)
            if isinstance(event, ProtocolError):
                return events

    def parse_whole(self, data: bytes) -> Optional[Request]:
        """The fast path of `receive_data(data)` then `next_event()`, for what a keep-alive client
        sends most: with nothing buffered, `data` exactly one complete request head and no body.
        Its Request then comes out without passing through the buffer. Anything else (a partial
        head, pipelining, a body, stray CRLFs, a head the parser refuses) gives None and changes
        nothing: the caller takes the general way, so the error contract has one implementation.
        `tests/test_protocol_fast.py` holds the two ways to the same results."""
        end = len(data) - 4
        if (
            self._buffer
            or self._body_left
            or self._failed
            or end <= 0
            or end + 4 > self.max_head
            or data.find(b"\r\n\r\n") != end
            or data.startswith(b"\r\n")
        ):
            return None
        try:
            request, body_length = parse_head(data[:end])
        except _BadRequest:
            return None
        return None if body_length else request

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
            if _BARE_LF.search(self._buffer):
                # Lines ended by LF alone never make the CRLFCRLF the head is waited for: answer
                # now rather than hold the client until the header-read deadline (a hang).
                return ProtocolError(400, "bare LF in the request head")
            return None
        if end + 4 > self.max_head:
            return ProtocolError(431, "request head larger than %d bytes" % self.max_head)
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        try:
            request, body_length = parse_head(head)
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


_TOKEN_TEXT = bytes(sorted(_TOKEN_CHARS)).decode("ascii")


def _is_token(text: str) -> bool:
    """A non-empty RFC 9110 token. `strip` runs in C: a per-character loop in Python cost more
    than the rest of the parse."""
    return bool(text) and not text.strip(_TOKEN_TEXT)


# Any control character but HTAB, searched for once the CRLF line ends are removed: NUL, a
# bare CR and a bare LF are what RFC 9110 section 5.5 says must never be accepted (a peer that
# ends lines differently would see other headers: request smuggling).
_CONTROL = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {0: "NUL", 13: "bare CR", 10: "bare LF"}
_BARE_LF = re.compile(b"(?<!\r)\n")  # an LF not preceded by CR, found before the head is complete
# uri-host [":" port] (RFC 3986): unreserved, sub-delims, pct-encoded, IP-literal brackets.
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"


def parse_head(head: bytes) -> Tuple[Request, int]:
    """The Request in `head` (without its final CRLFCRLF) and its body's length, or _BadRequest.

    Every head is parsed, even one repeated byte for byte (as a benchmark's client sends it):
    a table of parsed heads would make a repeated head nearly free, which real traffic is not,
    and the figures would flatter every built-in against servers that parse each request."""
    # The checks run in the order the error contract gives; the common case is tested first
    # where that saves work (a known method, no Connection or Content-Length header).
    text = head.decode("latin-1")  # latin-1 decodes any byte
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if method not in _COMMON_METHODS and not _is_token(method):
        raise _BadRequest("malformed method")
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        if version.startswith("HTTP/"):
            raise _BadRequest("unsupported HTTP version", 505)
        raise _BadRequest("malformed request line")
    # Lines all printable (checked in C) hold no control character; else look for the first.
    bad = None if all(map(str.isprintable, lines)) else _CONTROL.search(head.replace(b"\r\n", b""))
    if bad is not None:
        name = _CONTROL_NAMES.get(bad.group()[0], "control character 0x%02x" % bad.group()[0])
        raise _BadRequest("%s in the request head" % name)
    if "\t" in target:
        raise _BadRequest("malformed request target")
    headers: List[Tuple[str, str]] = []
    hosts: List[str] = []
    connection: List[str] = []
    lengths: List[str] = []
    chunked = False
    del lines[0]
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("malformed header line")
        lowered = _COMMON_NAMES.get(name)
        if lowered is None:
            if not name or name.strip(_TOKEN_TEXT):  # not a token (see _is_token)
                raise _BadRequest("malformed header line")
            lowered = name.lower()
        name = lowered
        value = value.strip(" \t")
        headers.append((name, value))
        # One pass collects what framing, keep-alive and Host need.
        if name == "host":
            hosts.append(value)
        elif name == "connection":
            connection.append(value)
        elif name == "content-length":
            lengths.append(value)
        elif name == "transfer-encoding":
            chunked = True
    body_length = _body_length(lengths, chunked) if lengths or chunked else 0
    if len(hosts) > 1:
        raise _BadRequest("more than one Host header")
    if hosts:
        if hosts[0].strip(_HOST_CHARS):
            raise _BadRequest("malformed Host header")
    elif version == "HTTP/1.1":
        raise _BadRequest("HTTP/1.1 request without a Host header")
    keep_alive = _keep_alive(version, connection) if connection else version == "HTTP/1.1"
    return new_request(method, target, version, tuple(headers), keep_alive), body_length


_COMMON_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))  # all tokens
# Header names clients send most, as they spell them (all tokens), and their lower-case forms.
_COMMON_NAMES = {
    spelt: name.lower()
    for name in (
        "Host",
        "User-Agent",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Connection",
        "Content-Length",
        "Content-Type",
        "Cache-Control",
        "Cookie",
        "Referer",
    )
    for spelt in (name, name.lower())
}
_new_object = object.__new__


def new_request(
    method: str, target: str, version: str, headers: Tuple[Tuple[str, str], ...], keep_alive: bool
) -> Request:
    """`Request(...)` at half the cost: a frozen dataclass's __init__ sets each field through
    object.__setattr__, which is a measurable share of a request's time. Equal to the
    constructor's result in every field (`tests/test_protocol_fast.py`)."""
    request = _new_object(Request)
    fields = request.__dict__
    fields["method"] = method
    fields["target"] = target
    fields["version"] = version
    fields["headers"] = headers
    fields["keep_alive"] = keep_alive
    return request


def _keep_alive(version: str, connection: List[str]) -> bool:
    tokens: Set[str] = set()
    for value in connection:
        tokens.update(token.strip().lower() for token in value.split(","))
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


def _body_length(lengths: List[str], chunked: bool) -> int:
    if chunked:
        raise _BadRequest("Transfer-Encoding is not supported; send Content-Length", 501)
    if not lengths:
        return 0
    if len(set(lengths)) > 1:
        raise _BadRequest("conflicting Content-Length headers")
    value = lengths[0]
    # isdigit() alone admits non-ASCII digits such as "\xb2"; 18 digits bound int() too.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise _BadRequest("malformed Content-Length")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise _BadRequest("request body larger than %d bytes" % MAX_BODY_BYTES, 413)
    return length
