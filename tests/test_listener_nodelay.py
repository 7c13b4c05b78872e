"""The server's listening sockets say they are TCP, so an asyncio server handed one turns Nagle off.

asyncio sets TCP_NODELAY on a connection only when its socket's `proto` is IPPROTO_TCP, which a
server that binds its own address (getaddrinfo) always gets. The harness binds the listener
for the strategy; with proto 0 every asyncio strategy's connection kept Nagle's algorithm on,
and a response written in two parts (head, then body) waited for the client's delayed ACK: 40 ms
per keep-alive request, which made asyncio-executor look 3.5x slower than it is. Checked on the
server's side of real connections, for the shared listener and the reuseport strategy's own.
"""

from __future__ import annotations

import asyncio
import socket
from typing import List

import pytest

from harness.server.process import make_listener
from strategies.reuseport import reuseport_listener

pytestmark = pytest.mark.timeout(30)


def server_side_nodelay(listener: socket.socket, use_uvloop: bool) -> int:
    """TCP_NODELAY on the server's end of one connection accepted by asyncio from `listener`."""
    seen: List[int] = []

    async def main() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            host, port = listener.getsockname()[:2]
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            for _ in range(200):  # bounded: the callback runs on the next loop turns
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    if use_uvloop:
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen, "no connection was accepted"
    return seen[0]


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_the_shared_listener_gives_asyncio_connections_without_nagle(use_uvloop: bool) -> None:
    listener = make_listener("127.0.0.1", 0, 16)
    assert listener.proto == socket.IPPROTO_TCP
    assert server_side_nodelay(listener, use_uvloop) != 0


def test_the_reuseport_listeners_too() -> None:
    first = make_listener("127.0.0.1", 0, 16)
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        own = reuseport_listener(first.getsockname(), socket.AF_INET, 16)
    finally:
        first.close()
    assert own.proto == socket.IPPROTO_TCP
    assert server_side_nodelay(own, use_uvloop=False) != 0
