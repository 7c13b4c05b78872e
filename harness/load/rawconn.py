"""Connection-per-request without transports: raw non-blocking sockets in one epoll set.

With `Connection: close` every request opens a connection, and opening one the event loop's
way (a task around `loop.create_connection`, a transport and a protocol object, and the
transport's own system calls: SO_ERROR, TCP_NODELAY, getsockname, getpeername) was most of the
client's Python per request and four of its ten system calls. Here a connection is a socket and
an entry in one epoll set, which the loop watches as a single descriptor:

    socket, connect (non-blocking), send, epoll_ctl(ADD), recv, close

Why it is shaped so:
- The request is sent right after `connect`: on loopback the handshake completes inside the
  connect call, so the send succeeds at once; elsewhere it fails with EAGAIN and the socket
  waits for writability like any non-blocking connect. A send that succeeds is what says the
  connection is up, so the `connected` milestone is exact either way.
- Edge-triggered (EPOLLET): one epoll_ctl per connection and never a modify; each readiness is
  drained until EAGAIN or until the slot closes the connection. Closing the socket removes it
  from the set. A descriptor number reused within one batch of events gets a stale event at
  worst, which costs a recv that finds nothing (EAGAIN).
- A failure found synchronously (socket, connect, or the first send) is reported from the next
  loop iteration (`call_soon`): a server refusing every connection cannot make a slot recurse.
- The client port (for the timeline of a request that fails) is read only when asked, while the
  socket is still open: a close the slot asks for from within this connection's own callback
  waits until the callback returns, and an abort (a failure, or shutdown) reads it first.
- The socket is the C type (`socket.SocketType`): socket.socket's Python layer over it (makefile
  reference counts) costs about 1 % of a connection and is of no use here.
- TCP_NODELAY only for a request too long for one segment: a single segment on a fresh
  connection has nothing in flight for Nagle's algorithm to wait on.

The slot state machine stays in slots.py; this class calls the same slot events as its
protocol path (`on_data`, `on_eof`, `on_lost`) plus `on_sent` (connected, request handed over)
and `on_connect_error`. Linux only (epoll); elsewhere the engine keeps its protocol path.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
from typing import Protocol

RECV_BYTES = 64 * 1024
# Reads per readiness before the loop's other callbacks (the ticker among them) get a turn: a
# server streaming faster than the client reads could otherwise hold the loop in one callback.
# Edge-triggered, the rest would get no new event, so the connection is called again at once.
MAX_READS_PER_READY = 16
MAX_EVENTS = 1024  # per epoll.poll: its event array is allocated on every call
ONE_SEGMENT_BYTES = 1400  # what one segment carries on a 1500-byte MTU path (loopback's is larger)
_IN = select.EPOLLIN | select.EPOLLET if hasattr(select, "EPOLLET") else 0
_IN_OUT = _IN | select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 0
_IN_PROGRESS = (0, errno.EINPROGRESS, errno.EINTR)  # EINTR: the connect goes on in the background
_Socket = socket.SocketType
_STREAM = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)  # (Linux: available() says so)


def available() -> bool:
    """Whether this platform has epoll (the raw path's only requirement)."""
    return hasattr(select, "epoll")


class Slot(Protocol):
    """What a raw connection tells its slot (slots.Slot)."""

    def on_sent(self, conn: RawConn) -> None: ...
    def on_connect_error(self, conn: RawConn, error: OSError) -> None: ...
    def on_data(self, conn: RawConn, data: bytes) -> None: ...
    def on_eof(self, conn: RawConn) -> None: ...
    def on_lost(self, conn: RawConn, exc: Exception | None) -> None: ...


class Poller:
    """The epoll set of one run's raw connections, watched by the event loop as one descriptor."""

    __slots__ = ("address", "conns", "epoll", "family", "loop", "maxevents", "nodelay")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, family: int, address: str, port: int, request: bytes, connections: int
    ) -> None:
        self.loop = loop
        self.family = family
        self.address = (address, port)
        self.nodelay = len(request) > ONE_SEGMENT_BYTES
        self.maxevents = min(MAX_EVENTS, max(16, 2 * connections))  # the rest come on the next call
        self.conns: dict[int, RawConn] = {}  # descriptor -> its connection, while open
        self.epoll = select.epoll()
        loop.add_reader(self.epoll.fileno(), self._ready)

    def _ready(self) -> None:
        conns = self.conns
        for fd, _events in self.epoll.poll(0, self.maxevents):
            conn = conns.get(fd)
            if conn is not None:
                conn.ready()

    def close(self) -> None:
        """Stop watching; close whatever connection is still open (shutdown)."""
        if self.epoll.closed:
            return
        self.loop.remove_reader(self.epoll.fileno())
        for conn in list(self.conns.values()):
            conn.close()
        self.epoll.close()


class RawConn:
    """One connection of a slot: connect, send the request, read until the slot decides."""

    __slots__ = ("busy", "closing", "connected", "fd", "out", "poller", "port", "slot", "sock")

    def __init__(self, slot: Slot, poller: Poller) -> None:
        self.slot = slot
        self.poller = poller
        self.sock: socket.SocketType | None = None
        self.out: bytes | None = None  # what is left to send (all of it until connected)
        self.connected = False
        self.busy = False  # in this connection's own callback: a close waits until it returns
        self.closing = False
        self.port: int | None = None
        self.fd = -1  # while in the poller's set

    def start(self, request: bytes) -> None:
        poller = self.poller
        try:
            self.sock = sock = _Socket(poller.family, _STREAM)
            if poller.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(poller.address)
        except OSError as error:  # EMFILE, or an address the family cannot take
            self._failed(error)
            return
        if code not in _IN_PROGRESS:
            self._failed(OSError(code, os.strerror(code)))
            return
        self.out = request
        if not self._send() or self.sock is None:
            return  # failed (reported), or given up on already
        self.fd = fd = sock.fileno()
        poller.conns[fd] = self
        poller.epoll.register(fd, _IN if self.out is None else _IN_OUT)

    def _send(self) -> bool:
        """Send what is left of the request; False if the connection failed (then reported)."""
        out, sock = self.out, self.sock
        if out is None or sock is None:
            return sock is not None
        try:
            sent = sock.send(out)
        except BlockingIOError:
            return True  # still connecting, or the send buffer is full: wait for writability
        except OSError as error:
            if self.connected:
                self._lost(error)
            else:
                self._failed(error)
            return False
        self.out = out[sent:] if sent < len(out) else None
        if not self.connected:
            self.connected = True
            self.slot.on_sent(self)
        return True

    def ready(self) -> None:
        """The socket is readable or writable (or has an error): drain it until EAGAIN."""
        if self.out is not None and (not self._send() or not self.connected):
            return
        sock, slot = self.sock, self.slot
        if sock is None:
            return  # closed meanwhile
        self.busy = True
        drained = False
        for _ in range(MAX_READS_PER_READY):
            if self.closing:
                break
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                drained = True
                break
            except OSError as error:
                self.closing = True
                slot.on_lost(self, error)
                break
            if data:
                slot.on_data(self, data)
            else:
                self.closing = True
                slot.on_eof(self)
        self.busy = False
        if self.closing:
            self._close()
        elif not drained:  # a server that streams faster than this reads: go on after the others
            self.poller.loop.call_soon(self.ready)

    def client_port(self) -> int | None:
        """This end's port, read once and only when asked (None before the connection is up)."""
        sock = self.sock
        if self.port is None and self.connected and sock is not None:
            try:
                self.port = int(sock.getsockname()[1])
            except OSError:
                pass
        return self.port

    def close(self) -> None:
        if self.busy:
            self.closing = True
        else:
            self._close()

    def abort(self) -> None:
        """Close, for a failure or shutdown: the port first, for the request's timeline."""
        self.client_port()
        self.close()

    def _close(self) -> None:
        sock = self.sock
        if sock is not None:
            self.sock = None
            self.poller.conns.pop(self.fd, None)  # (the fd is still this socket's: closed below)
            sock.close()  # also leaves the epoll set

    def _lost(self, error: OSError) -> None:
        self.client_port()
        self.closing = True
        self.slot.on_lost(self, error)
        if not self.busy:
            self._close()

    def _failed(self, error: OSError) -> None:
        self._close()
        self.poller.loop.call_soon(self.slot.on_connect_error, self, error)
