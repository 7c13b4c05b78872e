"""I/O adapters that join a socket to the protocol and the app.

`HttpSession` is the per-connection state every strategy shares: bytes in, one response at a
time out, whether to keep the connection, and when the current request head is overdue. The
adapters around it differ only in how they wait for bytes:

- `serve_blocking`: one blocking socket, used by pool workers, greenlets (gevent patches the
  socket) and fork-per-connection plugins. Every recv/send has a timeout.
- `serve_asyncio`: asyncio streams, with the app run wherever the caller says (an executor).
- the selector reactor in `reactor.py` feeds `HttpSession` one readable chunk at a time.

What a connection may hold is bounded, whatever the client does:

- Responses are produced and sent one at a time, and nothing more is read while a response is
  unsent. Pipelined requests therefore wait as unparsed bytes (the parser is pulled one event
  at a time), at most RECV_BYTES + MAX_HEAD_BYTES of them, and never as rendered responses:
  a client that pipelines 64 MiB responses and reads none costs one response, not all of them.
- Work stops for a client that has gone: before each further pipelined request and between
  slices of a long sleep or CPU burn, `peer_closed` looks whether the peer sent FIN or RST. A
  FIN counts as gone even when it may be a half-close, as nginx (499) and Go's request
  context do: a client that shuts down its sending side gets no answer to requests not yet
  finished.
- A request head must be complete within `App.limits.head_timeout_s` (see `app.Limits`).
  Overdue: 408 and close if some bytes of a head arrived (the client is talking and learns
  why, and a load generator records a status rather than an unexplained EOF); close without a
  word if nothing arrived (nothing was asked, so there is nothing to answer, and an
  unsolicited 408 could be read as the answer to a request sent at that moment).

Closing is `close()` only, never `shutdown()`: shutdown would send FIN even while another
process still holds the connection, which would hide exactly the lingering-reference hang that
the `pool-socket` strategy exists to show. The one exception is the close after an error
response to a request the server refused to read to its end (431, 414, 400, 408...): closing
with the client's bytes unread makes the kernel send RST, which can destroy the error response
in the client's receive buffer before it is read. There `linger_close` sends FIN (shutdown of
the sending side), reads and discards what still arrives for at most LINGER_S seconds and
LINGER_BYTES bytes, and only then closes, as HTTP/1.1 (RFC 9112 9.6) recommends. The paths
that must not block where they close do the same without blocking: the asyncio streams adapter
awaits its discarding reads (`_linger_stream`), the inline loops discard in `data_received`
until the sweep ends the linger, and the reactor keeps the socket open, unread, until its
sweep closes it LINGER_S later (tests/test_linger_after_error.py).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Optional, Tuple

from .app import App, Cancelled, ClientGone, handle
from .protocol import Event, ProtocolError, Request, RequestParser, Response, render, render_parts

if TYPE_CHECKING:  # asyncio is imported only by the strategies that serve with it
    import asyncio

RECV_BYTES = 65536
JOIN_BELOW = 65536  # a body shorter than this goes out in one send with its head
TIMED_OUT = Response(408, b"request head not complete in time\n")
LINGER_S = 1.0  # bounds of the discarding read after an error response (linger_close)
LINGER_BYTES = 1 << 20

_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux
_TCP_ESTABLISHED = 1  # tcp_info.tcpi_state, the first byte of struct tcp_info
_INET = (socket.AF_INET, socket.AF_INET6)

Parts = Tuple[bytes, bytes]  # a response's head and body, sent in that order


def peer_closed(sock: socket.socket) -> bool:
    """True once the peer has sent FIN or RST on `sock` (without reading anything from it).

    On Linux TCP the connection state (TCP_INFO) is read, which sees a FIN even behind unread
    pipelined bytes; elsewhere (and for AF_UNIX) a non-blocking MSG_PEEK, which sees it only
    when nothing is left unread."""
    if _TCP_INFO is not None and sock.family in _INET:
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)[0] != _TCP_ESTABLISHED
        except OSError:
            return True  # the socket is no longer usable: nobody to work for
    timeout = sock.gettimeout()
    try:
        # Timeout 0 rather than MSG_DONTWAIT: a socket with a timeout (and gevent's) would
        # otherwise wait for readability first.
        sock.settimeout(0.0)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read, no FIN: still there
    except OSError:
        return True  # reset
    finally:
        try:
            sock.settimeout(timeout)
        except OSError:
            pass


class HttpSession:
    """The server half of one HTTP connection, without I/O.

    Drive it as: `receive(bytes read)`; then `next_response()` until it returns None, sending
    each (head, body) before asking for the next; then, if `open`, wait for more bytes, at most
    `read_timeout(idle)` seconds, and when that passes with nothing, `timed_out()` says what to
    send (if anything) before closing."""

    __slots__ = ("_first_of_read", "_served", "app", "head_deadline", "linger", "open", "parser")

    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = RequestParser()
        self.open = True
        self.linger = False  # an error response was the last word: close with linger_close
        # The first head is due head_timeout_s after the accept; later ones after their first byte.
        self.head_deadline: Optional[float] = time.monotonic() + app.limits.head_timeout_s
        self._served = 0
        self._first_of_read = True

    def receive(self, data: bytes) -> None:
        """Take bytes read from the peer; b"" means the peer closed its side."""
        if not data:
            self.open = False
            return
        self.parser.receive_data(data)
        self._first_of_read = True

    def next_event(self, cancelled: Optional[Cancelled] = None) -> Optional[Event]:
        """The next request (or ProtocolError) to answer with `answer`, or None when more bytes
        are needed or the connection is over (`open` says which).

        `cancelled()` (e.g. `peer_closed` of the socket) is asked before every request but the
        first of a read: once it is True nothing more is answered and `open` turns False."""
        if not self.open:
            return None
        event = self.parser.next_event()
        if event is None:
            self._track_head()
            return None
        if isinstance(event, Request):
            self.head_deadline = None
            if not self._first_of_read and cancelled is not None and cancelled():
                self.open = False
                return None
            self._first_of_read = False
        return event

    def answer(self, event: Event, response: Optional[Response] = None) -> Parts:
        """The (head, body) answering `event`: `response` to a request, the error's own response
        to a ProtocolError. Afterwards `open` says whether the connection goes on."""
        if isinstance(event, ProtocolError):
            self.open = False
            self.linger = True
            return render_parts(event.response(), None, False)
        if response is None:
            raise ValueError("a request needs a response to answer it")
        self._served += 1
        if not event.keep_alive:
            self.open = False
        return render_parts(response, event, event.keep_alive)

    def next_response(self, cancelled: Optional[Cancelled] = None) -> Optional[Parts]:
        """`next_event`, the app run on it, and `answer`: the next (head, body) to send, or None.

        `cancelled` is also handed to the app, which consults it between slices of long work;
        work abandoned that way answers nothing and closes the session."""
        event = self.next_event(cancelled)
        if event is None or isinstance(event, ProtocolError):
            return None if event is None else self.answer(event)
        try:
            response = handle(self.app, event, cancelled)
        except ClientGone:
            self.open = False
            return None
        return self.answer(event, response)

    def _track_head(self) -> None:
        if self.parser.in_head:
            if self.head_deadline is None:  # a later request's head has begun: its clock starts
                self.head_deadline = time.monotonic() + self.app.limits.head_timeout_s
        elif self._served:  # between requests (or in a body): the idle timeout applies
            self.head_deadline = None

    def read_timeout(self, idle_timeout_s: float, now: Optional[float] = None) -> float:
        """How long the next read may wait: the idle timeout, or less if a head is due sooner
        (<= 0: it is overdue now)."""
        if self.head_deadline is None:
            return idle_timeout_s
        return min(idle_timeout_s, self.head_deadline - (time.monotonic() if now is None else now))

    def head_overdue(self, now: Optional[float] = None) -> bool:
        return self.head_deadline is not None and (time.monotonic() if now is None else now) >= self.head_deadline

    def timed_out(self) -> bytes:
        """The read timed out: close, with a 408 if a head had begun (b"" otherwise). A 408 is
        an error response like the others: a blocking server lingers after it (`linger`), else
        a byte the slow client sends meanwhile makes the close a reset that can destroy the 408
        before the client reads it."""
        self.open = False
        if self.parser.in_head:
            self.linger = True
            return render(TIMED_OUT, None, False)
        return b""


def send_parts(sock: socket.socket, parts: Parts) -> None:
    """Send a response's head and body; small ones in one send, a large body without copying."""
    head, body = parts
    if len(body) < JOIN_BELOW:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        sock.sendall(body)


def send_parts_now(sock: socket.socket, parts: Parts, timeout_s: float) -> None:
    """`send_parts` on a non-blocking socket (the reactor's): a small response goes out in one
    send that does not wait; only what does not fit is sent blocking, at most `timeout_s` per
    wait, and the socket is non-blocking again afterwards.

    Why: a socket with a timeout polls before every send and recv, and switching it between
    blocking and non-blocking is a system call too; the common case here needs neither."""
    head, body = parts
    joined = len(body) < JOIN_BELOW
    data = head + body if joined else head
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if joined and sent == len(data):
        return
    sock.settimeout(timeout_s)
    try:
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
        if not joined:
            sock.sendall(body)
    finally:
        sock.settimeout(0.0)


def send_nowait(sock: socket.socket, data: bytes) -> None:
    """One non-blocking send of a short last word (a 408); dropped if it does not fit at once."""
    if not data:
        return
    try:
        sock.settimeout(0.0)
        sock.send(data)
    except OSError:
        pass


class LingerReads:
    """The discarding reads of one linger: LINGER_BYTES at most, within LINGER_S."""

    __slots__ = ("deadline", "left")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + LINGER_S
        self.left = LINGER_BYTES

    def next(self) -> Optional[Tuple[float, int]]:
        """(seconds to wait, bytes to ask for) of the next read, or None: the linger is over."""
        wait = self.deadline - time.monotonic()
        return (wait, min(RECV_BYTES, self.left)) if wait > 0 and self.left > 0 else None

    def took(self, data: bytes) -> bool:
        """Count what a read returned; False at the client's EOF."""
        self.left -= len(data)
        return bool(data)


def linger_close(sock: socket.socket) -> None:
    """After an error response: FIN, then read and discard what the client is still sending
    (bounded by LINGER_S and LINGER_BYTES), so that closing does not reset the connection
    before the client has read the response. The caller closes the socket."""
    try:
        sock.shutdown(socket.SHUT_WR)
        reads = LingerReads()
        for _ in range(LINGER_BYTES):  # bounded: each turn reads a byte at least, or ends it
            step = reads.next()
            if step is None:
                break
            sock.settimeout(step[0])
            if not reads.took(sock.recv(step[1])):
                break
    except OSError:
        pass  # reset or timed out: the connection is over either way


def serve_blocking(
    sock: socket.socket, app: App, idle_timeout_s: float = 30.0, session: Optional[HttpSession] = None
) -> None:
    """Serve one connection until the client closes, asks to close, errs, idles out or is too
    slow with a request head; then close it. One response at a time, each sent before the next
    request is looked at; nothing is read while a response is unsent. `session`: a subclass's
    session for this connection (prefork-accept's decides keep-alive per request)."""
    session = session if session is not None else HttpSession(app)

    def gone() -> bool:
        return peer_closed(sock)

    timeout = -1.0  # settimeout only when it changes: each call is a syscall
    try:
        while session.open:
            parts = session.next_response(gone)
            if parts is not None:
                if timeout != idle_timeout_s:
                    timeout = idle_timeout_s
                    sock.settimeout(timeout)
                send_parts(sock, parts)
                continue
            if not session.open:
                break
            wait = session.read_timeout(idle_timeout_s)
            if wait <= 0:
                send_nowait(sock, session.timed_out())
                break
            if wait != timeout:
                timeout = wait
                sock.settimeout(timeout)
            try:
                data = sock.recv(RECV_BYTES)
            except socket.timeout:
                if session.head_overdue():
                    send_nowait(sock, session.timed_out())
                break
            session.receive(data)
    except OSError:
        pass  # reset, timeout, broken pipe: the connection is over either way
    finally:
        if session.linger:
            linger_close(sock)
        sock.close()


def _stream_peer_closed(writer: asyncio.StreamWriter) -> Callable[[], bool]:
    """`peer_closed` for an asyncio stream: the TCP state where Linux tells it, else never."""
    sock = writer.get_extra_info("socket")
    if sock is None or _TCP_INFO is None or sock.family not in _INET:
        return lambda: False
    return lambda: peer_closed(sock)


async def serve_asyncio(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    app: App,
    run: Callable[[App, Request], Awaitable[Response]],
    idle_timeout_s: float = 30.0,
) -> None:
    """Serve one asyncio-streams connection; `run(app, request)` produces each response.

    Requests on one connection are answered in order (pipelining), one at a time, each written
    and drained before the next is run; the peer check runs between pipelined requests (the
    work itself runs in `run`, which cannot be interrupted from here)."""
    import asyncio

    session = HttpSession(app)
    gone = _stream_peer_closed(writer)
    try:
        while session.open:
            event = session.next_event(gone)
            if event is None:
                if not session.open:
                    break
                wait = session.read_timeout(idle_timeout_s)
                try:
                    if wait <= 0:
                        raise asyncio.TimeoutError
                    data = await asyncio.wait_for(reader.read(RECV_BYTES), wait)
                except asyncio.TimeoutError:
                    if session.head_overdue():
                        writer.write(session.timed_out())
                    break
                session.receive(data)
                continue
            response = None if isinstance(event, ProtocolError) else await run(app, event)
            for part in session.answer(event, response):
                writer.write(part)
            await asyncio.wait_for(writer.drain(), idle_timeout_s)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            if session.linger:  # after an error response, as linger_close does for a socket
                await _linger_stream(reader, writer)
        finally:
            writer.close()


async def _linger_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """`linger_close` for an asyncio stream: FIN once the response is out, then read and discard
    (at most LINGER_BYTES, LINGER_S)."""
    import asyncio

    try:
        if writer.can_write_eof():
            writer.write_eof()
        reads = LingerReads()
        for _ in range(LINGER_BYTES):  # bounded: each turn reads a byte at least, or ends it
            step = reads.next()
            if step is None:
                break
            if not reads.took(await asyncio.wait_for(reader.read(step[1]), step[0])):
                break
    except (OSError, asyncio.TimeoutError):
        pass  # reset or timed out: the connection is over either way
