"""The I/O adapters over real sockets: serve_blocking and serve_asyncio on a socketpair, and
peer_closed on a socketpair and over loopback TCP.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from typing import Callable, List, Optional, Tuple

from session_cases import TIMEOUT_S, Counting, app, get, split_responses

from harness.server.app import App, Work, handle
from harness.server.connection import peer_closed, serve_asyncio, serve_blocking
from harness.server.protocol import Request, Response

# --------------------------------------------------------------------------- peer_closed


def test_peer_closed_on_a_socketpair() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(TIMEOUT_S)
        assert not peer_closed(a)
        b.sendall(b"pipelined bytes")
        assert not peer_closed(a)  # unread data, no EOF visible yet
        assert a.recv(100) == b"pipelined bytes"
        b.close()
        assert peer_closed(a)
        assert a.gettimeout() == TIMEOUT_S  # the peek restored the timeout


def test_peer_closed_over_tcp_sees_a_fin_behind_unread_bytes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
        server, _ = listener.accept()
        with client, server:
            assert not peer_closed(server)
            client.sendall(b"GET / HTTP/1.1\r\n")
            client.close()
            for _ in range(100):  # the FIN crosses loopback at once; bounded all the same
                if peer_closed(server):
                    break
                time.sleep(0.01)
            # On Linux the TCP state shows the FIN although the bytes before it are unread.
            assert peer_closed(server) or socket_has_no_tcp_info()


def socket_has_no_tcp_info() -> bool:
    return not hasattr(socket, "TCP_INFO")


# --------------------------------------------------------------------------- serve_blocking


def run_blocking(
    client_script: Callable[[socket.socket], bytes], idle_timeout_s: float = TIMEOUT_S, server_app: Optional[App] = None
) -> bytes:
    """Serve one end of a socketpair in a thread; run `client_script(sock)` on the other."""
    server_end, client_end = socket.socketpair()
    client_end.settimeout(TIMEOUT_S)
    served = server_app if server_app is not None else app()
    thread = threading.Thread(target=serve_blocking, args=(server_end, served, idle_timeout_s), daemon=True)
    thread.start()
    try:
        return client_script(client_end)
    finally:
        client_end.close()
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(10_000):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("no EOF")


def test_serve_blocking_keep_alive_then_close() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(get("/work?bytes=2"))
        first = sock.recv(65536)
        assert split_responses(first)[0][2] == b"xx"
        sock.sendall(get("/work?bytes=3", "Connection: close"))
        return read_to_eof(sock)  # the server closes after the close request

    assert [body for _, _, body in split_responses(run_blocking(client))] == [b"xxx"]


def test_serve_blocking_pipelined() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(get("/work?bytes=1") + get("/work?bytes=2") + get("/", "Connection: close"))
        return read_to_eof(sock)

    assert [status for status, _, _ in split_responses(run_blocking(client))] == [200, 200, 200]


def test_serve_blocking_closes_after_a_protocol_error() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(b"GARBAGE \x00\r\n\r\n")
        return read_to_eof(sock)

    assert [status for status, _, _ in split_responses(run_blocking(client))] == [400]


def test_serve_blocking_closes_an_idle_connection() -> None:
    def client(sock: socket.socket) -> bytes:
        return read_to_eof(sock)  # sends nothing: the idle timeout closes it

    assert run_blocking(client, idle_timeout_s=0.2) == b""


def test_serve_blocking_ends_when_the_client_closes() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(get("/"))
        data = sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        return data + read_to_eof(sock)

    assert len(split_responses(run_blocking(client))) == 1


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    """Poll `condition()` until it is true or `timeout` passes (bounded); return its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def test_serve_blocking_produces_the_next_response_only_after_sending_one() -> None:
    counting = Counting(Work())
    size = 2 << 20  # far more than a socketpair buffers: the first send blocks

    def client(sock: socket.socket) -> bytes:
        sock.sendall(b"".join(get("/work?bytes=%d&n=%d" % (size, n)) for n in range(4)))
        assert wait_until(lambda: len(counting.started) >= 1)
        time.sleep(0.3)  # time enough to run the other three, if the server did not wait
        assert counting.started == ["/work?bytes=%d&n=0" % size]
        received = bytearray()
        for _ in range(100_000):  # read the four responses (bounded), then close
            received += sock.recv(1 << 20)
            if len(received) >= 4 * size:
                break
        return bytes(received)

    data = run_blocking(client, server_app=counting)
    assert len(data) >= 4 * size
    assert len(counting.started) == 4


def test_serve_blocking_abandons_pipelined_work_when_the_client_has_gone() -> None:
    counting = Counting(Work())
    server_end, client_end = socket.socketpair()
    thread = threading.Thread(target=serve_blocking, args=(server_end, counting, TIMEOUT_S), daemon=True)
    client_end.sendall(b"".join(get("/work?sleep_ms=2000&n=%d" % n) for n in range(3)))
    client_end.close()  # gone before any answer
    thread.start()
    thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    # The first request of the read started (and its sleep was cut short); the others never did.
    assert counting.started == ["/work?sleep_ms=2000&n=0"]


def test_serve_blocking_cuts_a_slow_head_with_408() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(50):  # slowloris: one header byte at a time, never the end of the head
            try:
                sock.sendall(b"X")
            except OSError:
                break  # the server has closed
            if select.select([sock], [], [], 0.1)[0]:
                break
        return read_to_eof(sock)

    [(status, headers, _)] = split_responses(run_blocking(client, idle_timeout_s=60.0, server_app=app(0.3)))
    assert status == 408 and headers["connection"] == "close"


def test_serve_blocking_lingers_after_a_408() -> None:
    # The slow client's next byte, sent after the 408 went out, must find the server still
    # reading (FIN sent, discarding): closed at once, the server would answer it with a reset
    # that can destroy the 408 before the client has read it.
    def client(sock: socket.socket) -> bytes:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        first = sock.recv(65536)  # the 408, after the 0.3 s head deadline
        time.sleep(0.05)
        sock.sendall(b"X-Late: 1\r\n")
        return first + read_to_eof(sock)

    [(status, _headers, _)] = split_responses(run_blocking(client, idle_timeout_s=60.0, server_app=app(0.3)))
    assert status == 408


def test_serve_blocking_closes_a_silent_new_connection_at_the_head_deadline() -> None:
    # The idle timeout (60 s) is far beyond the client's own read timeout: only the head
    # deadline can close this connection in time.
    assert run_blocking(read_to_eof, idle_timeout_s=60.0, server_app=app(0.3)) == b""


def test_serve_blocking_keep_alive_idle_is_not_cut_by_the_head_deadline() -> None:
    def client(sock: socket.socket) -> bytes:
        sock.sendall(get("/work?bytes=1"))
        first = sock.recv(65536)
        time.sleep(0.3)  # idle between requests, past the head deadline
        sock.sendall(get("/work?bytes=2", "Connection: close"))
        return first + read_to_eof(sock)

    data = run_blocking(client, idle_timeout_s=60.0, server_app=app(0.2))
    assert [body for _, _, body in split_responses(data)] == [b"x", b"xx"]


# --------------------------------------------------------------------------- serve_asyncio


async def _run_asyncio(
    payload: bytes, idle_timeout_s: float = TIMEOUT_S, server_app: Optional[App] = None
) -> Tuple[bytes, List[str]]:
    server_end, client_end = socket.socketpair()
    seen: List[str] = []

    async def run(app_: App, request: Request) -> Response:
        seen.append(request.target)
        await asyncio.sleep(0)
        return handle(app_, request)

    reader, writer = await asyncio.open_connection(sock=server_end)
    served = server_app if server_app is not None else app()
    task = asyncio.ensure_future(serve_asyncio(reader, writer, served, run, idle_timeout_s))
    client_reader, client_writer = await asyncio.open_connection(sock=client_end)
    client_writer.write(payload)
    await client_writer.drain()
    data = await asyncio.wait_for(client_reader.read(), TIMEOUT_S)  # until the server closes
    await asyncio.wait_for(task, TIMEOUT_S)
    client_writer.close()
    return data, seen


def run_asyncio(
    payload: bytes, idle_timeout_s: float = TIMEOUT_S, server_app: Optional[App] = None
) -> Tuple[bytes, List[str]]:
    return asyncio.run(_run_asyncio(payload, idle_timeout_s, server_app))


def test_serve_asyncio_pipelined_in_order_then_close() -> None:
    data, seen = run_asyncio(get("/work?bytes=1") + get("/work?bytes=2") + get("/work?bytes=3", "Connection: close"))
    assert [body for _, _, body in split_responses(data)] == [b"x", b"xx", b"xxx"]
    assert seen == ["/work?bytes=1", "/work?bytes=2", "/work?bytes=3"]


def test_serve_asyncio_protocol_error_skips_the_app_and_closes() -> None:
    data, seen = run_asyncio(get("/a") + b"GET / HTTP/9.9\r\n\r\n" + get("/b"))
    assert [status for status, _, _ in split_responses(data)] == [404, 505]
    assert seen == ["/a"]


def test_serve_asyncio_idle_timeout_closes() -> None:
    data, seen = run_asyncio(b"", idle_timeout_s=0.2)
    assert data == b"" and seen == []


def test_serve_asyncio_http10_closes() -> None:
    data, _ = run_asyncio(get("/", version="HTTP/1.0"))
    [(status, headers, _)] = split_responses(data)
    assert status == 200 and headers["connection"] == "close"


def test_serve_asyncio_cuts_an_incomplete_head_with_408() -> None:
    data, seen = run_asyncio(b"GET / HTTP/1.1\r\nHost: x\r\n", idle_timeout_s=60.0, server_app=app(0.3))
    [(status, headers, _)] = split_responses(data)
    assert status == 408 and headers["connection"] == "close"
    assert seen == []


def test_serve_asyncio_closes_a_silent_new_connection_at_the_head_deadline() -> None:
    data, seen = run_asyncio(b"", idle_timeout_s=60.0, server_app=app(0.3))
    assert data == b"" and seen == []


def test_serve_asyncio_large_body_arrives_whole() -> None:
    data, _ = run_asyncio(get("/work?bytes=%d" % (1 << 20), "Connection: close"))
    [(status, _, body)] = split_responses(data)
    assert status == 200 and body == b"x" * (1 << 20)
