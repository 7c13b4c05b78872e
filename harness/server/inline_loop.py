"""One asyncio event loop serving a listener, the handler run inline (no executor), until an fd is readable.

Connections are served by an `asyncio.Protocol` driving `HttpSession` directly rather than by
`connection.serve_asyncio`: with the handler inline there is nothing to await, and the streams
adapter's per-read `wait_for` costs a task and a timer per request. The bounds are the same:

- one response at a time; when the transport's write buffer passes its high-water mark
  (`pause_writing`), no further pipelined request is answered and nothing more is read until it
  drains (`resume_writing`);
- the peer check (`peer_closed`) before each further pipelined request and inside long work;
- the header deadline and the idle timeout, checked by one sweep per loop every
  SWEEP_INTERVAL_S rather than a timer per connection (a 408 if a head had begun);
- after an error response (a 408 among them) the connection lingers as the blocking server's
  does (connection.py): FIN once the response is out, then what the client still sends is read
  and discarded, at most LINGER_BYTES and LINGER_S (the sweep ends it), so that the close cannot
  turn into a reset that destroys the response before the client has read it;
- at most `App.limits.max_connections` connections served at once per loop: past it, accepted
  connections are parked (reading paused, at most one chunk read, nothing answered) until one ends.

The per-request Python is what limits these strategies (the kernel's read and write are the
rest), so a read holding exactly one whole request head, what a keep-alive client sends, takes
a shorter way (`RequestParser.parse_whole`, `answer_one`) to the same bytes out;
`tests/test_inline_fast.py` drives both ways with the same input and compares what they send.

Shared by the `asyncio` strategy (one loop in the server process, stopped by the stop fd) and
the `reuseport` workers (one loop per worker, stopped by EOF on the worker's channel), so that
the two differ only in how many loops there are and where their listeners come from.

The handler runs in the loop's own thread, as uvicorn runs a synchronous ASGI app that does not
offload: every request costs no hand-off, and CPU work or a sleep blocks every other connection
of that loop until it ends. That is the point of these strategies: the baseline that
`asyncio-executor`'s executor costs against, and the model of nginx's and uvicorn's workers.

uvloop is used when it is importable (it is optional: the server side is standard library only).
Python 3.8+.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Callable, Deque, Optional, Set

from . import log
from .app import App, ClientGone, handle
from .connection import JOIN_BELOW, LINGER_BYTES, LINGER_S, HttpSession, Parts, peer_closed
from .protocol import Request

STOP_WAIT_S = 2.0  # for open connections to end once their transports are closed
SWEEP_INTERVAL_S = 0.25  # how often connections are checked for the idle timeout and head deadline
_monotonic = time.monotonic


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def serve_inline(listener: Any, app: App, idle_timeout_s: float, backlog: int, stop_fd: int) -> None:
    """Serve `listener` on a new event loop until `stop_fd` is readable; then close every
    connection (bounded by STOP_WAIT_S) and the loop."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    log.get().info("serving inline on {}", loop_name())
    try:
        loop.run_until_complete(_serve(listener, app, idle_timeout_s, backlog, stop_fd))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class InlineHttp(asyncio.Protocol):
    """One connection: bytes in, the app run inline, responses out."""

    fast = True  # take `answer_one` for a read holding one whole request (False: tests of the general way)

    def __init__(self, app: App, served: Served) -> None:
        self.app = app
        self.served = served
        self.session = HttpSession(app)
        self.transport: Any = None
        self.last_active = time.monotonic()
        self.paused = False  # the write buffer is full: answer nothing more until it drains
        self.parked = False  # over the connection cap: not read until a slot frees
        self.gone: Optional[Callable[[], bool]] = None
        self.lingering = 0.0  # after an error response: discarding what comes until then (monotonic)
        self.linger_left = LINGER_BYTES

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.gone = lambda: peer_closed(sock)
        self.served.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = _monotonic()
        session = self.session
        if self.fast and session.open and not self.paused and not self.parked:
            # The fast path: one whole request head in one read, nothing else buffered (what a
            # keep-alive client sends); None for anything else, which takes the general way.
            request = session.parser.parse_whole(data)
            if request is not None:
                self.answer_one(request)
                return
        if self.lingering:
            self.linger_left -= len(data)  # read and dropped: the response is out, FIN sent
            if self.linger_left <= 0:
                self.end_linger()
            return
        session.receive(data)
        if self.parked:  # uvloop may start reading after connection_made paused it: pause again
            self.transport.pause_reading()
            return  # answered when unparked
        self.answer()

    def answer_one(self, request: Request) -> None:
        """What `answer` does after `session.receive` for a read that held exactly `request`:
        the first request of a read, so no peer check before it (`HttpSession.next_event`), and
        nothing buffered after it, so nothing more to answer."""
        session = self.session
        session.head_deadline = None  # as HttpSession.next_event does for each request
        try:
            response = handle(self.app, request, self.gone)
        except ClientGone:
            session.open = False  # as HttpSession.next_response does: nobody is left to answer
            self.transport.close()
            return
        self.send(session.answer(request, response))
        if not session.open:
            self.close()
        elif self.paused:
            self.transport.pause_reading()

    def eof_received(self) -> Optional[bool]:
        if not self.lingering:
            self.session.receive(b"")  # a FIN counts as gone (see connection.py)
        return None  # the transport closes itself (a linger ends here too: the client is done)

    def answer(self) -> None:
        session = self.session
        while not self.paused:
            parts = session.next_response(self.gone)
            if parts is None:
                break
            self.send(parts)
        if not session.open:
            self.close()
        elif self.paused:
            self.transport.pause_reading()

    def close(self) -> None:
        """Close once what is buffered has been sent; after an error response, linger first."""
        if self.session.linger and not self.lingering and self.transport.can_write_eof():
            self.transport.write_eof()  # FIN after the response; the read side stays open
            self.lingering = _monotonic() + LINGER_S
            return
        self.transport.close()

    def end_linger(self) -> None:
        """Close now; abort if the response is still unsent (a client that reads nothing would
        hold a close that waits for the write buffer to drain)."""
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def send(self, parts: Parts) -> None:
        head, body = parts
        if len(body) < JOIN_BELOW:
            self.transport.write(head + body)  # one send
        else:
            self.transport.write(head)  # no copy of a large body
            self.transport.write(body)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.last_active = time.monotonic()
        if self.session.open and not self.parked:
            self.transport.resume_reading()
            self.answer()  # pipelined requests that waited for the buffer to drain

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.served.remove(self)

    def expire(self, now: float, idle_timeout_s: float) -> None:
        """Close if the head is overdue (408 if it had begun) or the connection idled out, or
        a linger is over."""
        if self.lingering:
            if now >= self.lingering:
                self.end_linger()
            return
        if self.parked or not (self.session.head_overdue(now) or now - self.last_active >= idle_timeout_s):
            return
        if self.paused:
            self.transport.abort()  # a client that reads nothing: close() would wait for it for ever
            return
        self.transport.write(self.session.timed_out())
        self.close()


class Served:
    """The connections of one loop, and the ones parked over the connection cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active: Set[InlineHttp] = set()
        self.parked: Deque[InlineHttp] = collections.deque()

    def add(self, conn: InlineHttp) -> None:
        if len(self.active) >= self.cap:
            conn.parked = True
            conn.transport.pause_reading()
            self.parked.append(conn)
            return
        self.active.add(conn)

    def remove(self, conn: InlineHttp) -> None:
        if conn.parked:
            self.parked.remove(conn)
            return
        self.active.discard(conn)
        while self.parked and len(self.active) < self.cap:
            waiting = self.parked.popleft()
            waiting.parked = False
            waiting.last_active = time.monotonic()
            self.active.add(waiting)
            waiting.transport.resume_reading()
            waiting.answer()  # what it sent while parked

    def all(self) -> Set[InlineHttp]:
        return self.active | set(self.parked)


async def _serve(listener: Any, app: App, idle_timeout_s: float, backlog: int, stop_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop() -> None:
        loop.remove_reader(stop_fd)  # level-triggered: once is enough
        stop.set()

    loop.add_reader(stop_fd, on_stop)
    served = Served(app.limits.max_connections)
    server = await loop.create_server(lambda: InlineHttp(app, served), sock=listener, backlog=backlog)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_S)
            except asyncio.TimeoutError:
                now = time.monotonic()
                for conn in list(served.active):
                    conn.expire(now, idle_timeout_s)
    finally:
        loop.remove_reader(stop_fd)  # a no-op after on_stop
        server.close()
        # Idle keep-alive clients would otherwise hold the stop for the idle timeout.
        for conn in served.all():
            conn.transport.close()
        deadline = time.monotonic() + STOP_WAIT_S
        while served.all() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
