"""HttpSession (per-connection state, no I/O) and the two I/O adapters over a socketpair."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import List, Tuple

from harness.server.app import App, Work, handle
from harness.server.connection import HttpSession, serve_asyncio, serve_blocking
from harness.server.protocol import Request, Response

TIMEOUT_S = 10.0


def get(target: str = "/", *headers: str, version: str = "HTTP/1.1") -> bytes:
    return ("GET %s %s\r\n" % (target, version) + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def split_responses(data: bytes) -> List[Tuple[int, dict, bytes]]:
    """Cut a byte stream into (status, headers, body) by Content-Length."""
    out = []
    for _ in range(1000):
        if not data:
            return out
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines))
        length = int(headers["content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    raise AssertionError("too many responses")


def app() -> App:
    return App(Work(bytes=5))


# --------------------------------------------------------------------------- HttpSession


def test_keep_alive_session_stays_open_across_requests() -> None:
    session = HttpSession(app())
    for i in range(3):
        [(status, headers, body)] = split_responses(session.receive(get("/work?bytes=%d" % i)))
        assert status == 200 and body == b"x" * i
        assert "connection" not in headers
        assert session.open


def test_partial_request_sends_nothing_and_stays_open() -> None:
    session = HttpSession(app())
    assert session.receive(b"GET / HT") == b""
    assert session.open
    [(status, _, _)] = split_responses(session.receive(b"TP/1.1\r\n\r\n"))
    assert status == 200


def test_connection_close_answers_then_closes() -> None:
    session = HttpSession(app())
    [(status, headers, _)] = split_responses(session.receive(get("/", "Connection: close")))
    assert status == 200
    assert headers["connection"] == "close"
    assert not session.open


def test_http10_closes_by_default_and_keeps_alive_when_asked() -> None:
    session = HttpSession(app())
    [(_, headers, _)] = split_responses(session.receive(get("/", version="HTTP/1.0")))
    assert headers["connection"] == "close"
    assert not session.open
    session = HttpSession(app())
    [(_, headers, _)] = split_responses(session.receive(get("/", "Connection: keep-alive", version="HTTP/1.0")))
    assert headers["connection"] == "keep-alive"
    assert session.open


def test_pipelined_requests_answered_in_order() -> None:
    session = HttpSession(app())
    out = session.receive(b"".join(get("/work?bytes=%d" % n) for n in (1, 2, 3)))
    assert [body for _, _, body in split_responses(out)] == [b"x", b"xx", b"xxx"]
    assert session.open


def test_requests_pipelined_after_close_are_not_answered() -> None:
    session = HttpSession(app())
    out = session.receive(get("/work?bytes=1") + get("/work?bytes=2", "Connection: close") + get("/work?bytes=3"))
    assert [body for _, _, body in split_responses(out)] == [b"x", b"xx"]
    assert not session.open


def test_protocol_error_answers_and_closes() -> None:
    session = HttpSession(app())
    out = session.receive(get("/work?bytes=1") + b"GET / HTTP/9.9\r\n\r\n" + get("/"))
    responses = split_responses(out)
    assert [status for status, _, _ in responses] == [200, 505]
    assert responses[1][1]["connection"] == "close"
    assert not session.open


def test_garbage_answers_400_and_closes() -> None:
    session = HttpSession(app())
    [(status, headers, _)] = split_responses(session.receive(b"\x16\x03\x01\x00\xa5\x01\x00"))
    assert status == 400 and headers["connection"] == "close"
    assert not session.open


def test_app_errors_keep_the_connection() -> None:
    session = HttpSession(app())
    out = session.receive(get("/nope") + get("/work?bytes=oops") + get("/", "X: y").replace(b"GET", b"PUT"))
    assert [status for status, _, _ in split_responses(out)] == [404, 400, 405]
    assert session.open


def test_eof_closes() -> None:
    session = HttpSession(app())
    assert session.receive(b"") == b""
    assert not session.open


def test_respond_with_a_given_response_skips_the_app() -> None:
    session = HttpSession(app())
    [request] = session.parser.feed(get("/nope"))
    out, keep = session.respond(request, Response(200, b"given"))
    assert keep and out.endswith(b"\r\n\r\ngiven")


# --------------------------------------------------------------------------- serve_blocking


def run_blocking(client_script, idle_timeout_s: float = TIMEOUT_S) -> bytes:  # type: ignore[no-untyped-def]
    """Serve one end of a socketpair in a thread; run `client_script(sock)` on the other."""
    server_end, client_end = socket.socketpair()
    client_end.settimeout(TIMEOUT_S)
    thread = threading.Thread(target=serve_blocking, args=(server_end, app(), idle_timeout_s), daemon=True)
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


# --------------------------------------------------------------------------- serve_asyncio


async def _run_asyncio(payload: bytes, idle_timeout_s: float = TIMEOUT_S) -> Tuple[bytes, List[str]]:
    server_end, client_end = socket.socketpair()
    seen: List[str] = []

    async def run(app_: App, request: Request) -> Response:
        seen.append(request.target)
        await asyncio.sleep(0)
        return handle(app_, request)

    reader, writer = await asyncio.open_connection(sock=server_end)
    task = asyncio.ensure_future(serve_asyncio(reader, writer, app(), run, idle_timeout_s))
    client_reader, client_writer = await asyncio.open_connection(sock=client_end)
    client_writer.write(payload)
    await client_writer.drain()
    data = await asyncio.wait_for(client_reader.read(), TIMEOUT_S)  # until the server closes
    await asyncio.wait_for(task, TIMEOUT_S)
    client_writer.close()
    return data, seen


def run_asyncio(payload: bytes, idle_timeout_s: float = TIMEOUT_S) -> Tuple[bytes, List[str]]:
    return asyncio.run(_run_asyncio(payload, idle_timeout_s))


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
