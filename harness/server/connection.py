"""I/O adapters that join a socket to the protocol and the app.

`HttpSession` is the per-connection state every strategy shares: bytes in, bytes to send out and
whether to keep the connection. The adapters around it differ only in how they wait for bytes:

- `serve_blocking`: one blocking socket, used by pool workers, greenlets (gevent patches the
  socket) and fork-per-connection plugins. Every recv/send has a timeout.
- `serve_asyncio`: asyncio streams, with the app run wherever the caller says (an executor).
- the selector reactor in `reactor.py` feeds `HttpSession` one readable chunk at a time.

Closing is `close()` only, never `shutdown()`: shutdown would send FIN even while another
process still holds the connection, which would hide exactly the lingering-reference hang that
the `pool-socket` strategy exists to show.
"""

from __future__ import annotations

import socket
from typing import Any, Awaitable, Callable, List, Optional, Tuple

from .app import App, handle
from .protocol import ProtocolError, Request, RequestParser, Response, render

RECV_BYTES = 65536


class HttpSession:
    """The server half of one HTTP connection, without I/O."""

    __slots__ = ("app", "open", "parser")

    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = RequestParser()
        self.open = True

    def receive(self, data: bytes) -> bytes:
        """Handle `data`; return the bytes to send. Afterwards `open` says whether to go on."""
        if not data:
            self.open = False
            return b""
        out: List[bytes] = []
        for event in self.parser.feed(data):
            response, keep = self.respond(event)
            out.append(response)
            if not keep:
                self.open = False
                break
        return b"".join(out)

    def respond(self, event: Any, response: Optional[Response] = None) -> Tuple[bytes, bool]:
        """Render the answer to one parser event (running the app unless `response` is given)."""
        if isinstance(event, ProtocolError):
            return render(event.response(), None, False), False
        if response is None:
            response = handle(self.app, event)
        return render(response, event, event.keep_alive), event.keep_alive


def serve_blocking(sock: socket.socket, app: App, idle_timeout_s: float = 30.0) -> None:
    """Serve one connection until the client closes, asks to close, errs or idles out; then close it."""
    session = HttpSession(app)
    try:
        sock.settimeout(idle_timeout_s)
        while session.open:
            out = session.receive(sock.recv(RECV_BYTES))
            if out:
                sock.sendall(out)
    except OSError:
        pass  # reset, timeout, broken pipe: the connection is over either way
    finally:
        sock.close()


async def serve_asyncio(
    reader: Any,
    writer: Any,
    app: App,
    run: Callable[[App, Request], Awaitable[Response]],
    idle_timeout_s: float = 30.0,
) -> None:
    """Serve one asyncio-streams connection; `run(app, request)` produces each response."""
    import asyncio

    session = HttpSession(app)
    try:
        while session.open:
            data = await asyncio.wait_for(reader.read(RECV_BYTES), idle_timeout_s)
            if not data:
                break
            # Requests on one connection are answered in order (pipelining), one at a time.
            for event in session.parser.feed(data):
                response = None if isinstance(event, ProtocolError) else await run(app, event)
                out, keep = session.respond(event, response)
                writer.write(out)
                await asyncio.wait_for(writer.drain(), idle_timeout_s)
                if not keep:
                    session.open = False
                    break
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
