"""Sans-I/O reader for one HTTP/1.1 response: bytes in, an outcome kind out.

Both engines (asyncio and blocking threads) drive this same reader, so a difference between
engines is never a difference in HTTP handling, and the tests can feed it any byte sequence
without a socket.

It is deliberately minimal, because it sits on the client's hot path: the client never
pipelines, so at most one response is in flight per connection; the body is counted, never
stored; the head is parsed once, when its blank line arrives; and a response identical to the
last one decided in a single chunk (as a keep-alive server's mostly are) is decided by one
bytes compare instead of a parse, with the same result by construction. It understands a
status line, `Content-Length` and `Connection`, and refuses what the harness's servers never send
(`Transfer-Encoding`, 1xx) as `malformed` rather than guess.

Two read modes:
- content-length: the response ends when `Content-Length` bytes of body have arrived (what a
  correct client does); a response without the header is delimited by the close (RFC 9112).
- eof: the response ends only when the server closes (what naive clients do); the body length
  is then checked against `Content-Length` if there was one.
"""

from __future__ import annotations

from .metrics import CLOSED, HTTP_ERROR, MALFORMED, OK

MAX_HEAD_BYTES = 64 * 1024
MAX_LENGTH_DIGITS = 18  # Content-Length below 10**18 bytes
_PREFIX = b"HTTP/1."


class ResponseReader:
    """Feed it what the socket gave; `feed` and `feed_eof` return an outcome kind once the
    response is decided (None: need more bytes). After that, `reusable` says whether the
    connection may carry another request. Call `reset()` before the next response."""

    __slots__ = (
        "_got",
        "_head",
        "_in_body",
        "_length",
        "_memo",
        "_until_eof",
        "fresh",
        "keep_alive",
        "read_eof",
        "reusable",
        "status",
        "whole_ok",
    )

    def __init__(self, read_eof: bool = False, keep_alive: bool = False) -> None:
        self.read_eof = read_eof
        # The last response that arrived whole in one chunk and was decided by it: (bytes, kind,
        # status, reusable, length, got). Parsing depends on nothing but the bytes (and read_eof, fixed
        # here), so the same bytes again decide the same way; a keep-alive server mostly sends the
        # same bytes over and over, and a compare costs far less than a parse.
        self._memo: tuple[bytes, str, int, bool, int, int] | None = None
        # The bytes of the last response decided `ok` by one chunk alone, ended by its length, and
        # reusable if the caller keeps its connections (`keep_alive`): a caller holding a fresh
        # reader (`fresh`: nothing fed since reset) may take the same bytes again as the same
        # outcome without feeding them (the engine's hot path, slots.py).
        self.keep_alive = keep_alive
        self.whole_ok: bytes | None = None
        self.reset()

    def reset(self) -> None:
        self.fresh = True
        self.status = 0
        self.reusable = False
        self._head = b""
        self._length = -1  # -1: no Content-Length
        self._got = 0
        self._in_body = False
        self._until_eof = False

    def feed(self, data: bytes) -> str | None:
        self.fresh = False
        if self._in_body:
            return self._body(len(data))
        fresh = not self._head
        memo = self._memo
        if fresh and memo is not None and memo[0] == data:
            _data, known, self.status, self.reusable, self._length, self._got = memo
            self._in_body = True
            return known
        kind = self._feed_head(data)
        if fresh and kind is not None and self._in_body:  # decided by this one chunk alone
            self._memo = (data, kind, self.status, self.reusable, self._length, self._got)
            done = kind == OK and not self._until_eof and (self.reusable or not self.keep_alive)
            self.whole_ok = data if done else None
        return kind

    def _feed_head(self, data: bytes) -> str | None:
        head = self._head + data if self._head else data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if head[:7] != _PREFIX[: len(head)] or len(head) > MAX_HEAD_BYTES:
                return MALFORMED
            self._head = head
            return None
        self._head = b""
        if not self._parse_head(head, end):
            return MALFORMED
        self._in_body = True
        return self._body(len(head) - end - 4)

    def feed_eof(self) -> str:
        """The server closed its side (or the connection is gone): decide now."""
        if not self._in_body:
            return CLOSED
        if self._until_eof:
            if self._length < 0 or self._got == self._length:
                return self._complete()
            return CLOSED if self._got < self._length else MALFORMED
        return CLOSED  # content-length mode: feed() would have finished a complete response

    def _body(self, size: int) -> str | None:
        self._got += size
        if self._until_eof:
            return None
        if self._got < self._length:
            return None
        if self._got > self._length:
            return MALFORMED  # bytes beyond the body: the client never pipelines
        return self._complete()

    def _complete(self) -> str:
        return OK if 200 <= self.status < 300 else HTTP_ERROR

    def body_complete(self) -> bool:
        """Every byte of a Content-Length body is in, while reading on until the server closes
        (`read_eof`): what is missing now is only the FIN (a per-request timeline milestone)."""
        return self._in_body and 0 <= self._length <= self._got

    def _parse_head(self, head: bytes, end: int) -> bool:
        line_end = head.find(b"\r\n", 0, end)
        if line_end < 0:
            line_end = end
        line = head[:line_end]
        if line[:7] != _PREFIX or len(line) < 12 or line[8:9] != b" " or line[12:13] not in (b"", b" "):
            return False
        minor, code = line[7:8], line[9:12]
        if minor not in (b"0", b"1") or not code.isdigit():
            return False
        status = int(code)
        if status < 200:
            return False  # 1xx: the client asks for nothing that warrants one
        close = minor == b"0"
        length = -1
        if line_end < end:
            for header in head[line_end + 2 : end].split(b"\r\n"):
                name, sep, value = header.partition(b":")
                if not sep or not name or name[-1:] in (b" ", b"\t"):
                    return False
                name = name.lower()
                if name == b"content-length":
                    value = value.strip()
                    # bytes.isdigit() is ASCII-only; the length cap keeps int() away from
                    # its 4300-digit limit (ValueError) and from absurd sizes.
                    if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                        return False
                    if length >= 0 and int(value) != length:
                        return False
                    length = int(value)
                elif name == b"connection":
                    tokens = value.lower()
                    close = b"close" in tokens if minor == b"1" else b"keep-alive" not in tokens
                elif name == b"transfer-encoding":
                    return False
        if status in (204, 304):
            length = 0
        self.status = status
        self._length = length
        self._until_eof = self.read_eof or length < 0
        self.reusable = not close and not self._until_eof
        return True
