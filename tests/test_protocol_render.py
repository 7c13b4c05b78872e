"""Rendering responses: status line, headers, keep-alive, HEAD, and validity for an independent parser (h11)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from protocol_cases import SIMPLE, only_request, parse_response

from harness.server.protocol import ProtocolError, Response, render, render_parts


def test_render_keep_alive_response() -> None:
    request = only_request(SIMPLE)
    raw = render(Response(200, b"hello"), request, keep_alive=True)
    status_line, headers, body = parse_response(raw)
    names = [name.lower() for name, _ in headers]
    assert status_line == "HTTP/1.1 200 OK"
    assert body == b"hello"
    assert ("Content-Length", "5") in headers
    assert ("Server", "hangbench") in headers
    assert ("Content-Type", "text/plain") in headers
    assert "connection" not in names  # HTTP/1.1 keeps alive by default
    assert names.count("date") == 1
    date = dict(headers)["Date"]
    assert date.endswith(" GMT")
    assert parsedate_to_datetime(date).year >= 2024


def test_render_close_says_connection_close() -> None:
    request = only_request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, headers, _ = parse_response(render(Response(200, b"x"), request, keep_alive=False))
    assert ("Connection", "close") in headers


def test_render_http10_keep_alive_says_so() -> None:
    request = only_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status_line, headers, _ = parse_response(render(Response(200, b"x"), request, keep_alive=True))
    assert status_line.startswith("HTTP/1.1 200")
    assert ("Connection", "keep-alive") in headers


def test_render_head_has_length_but_no_body() -> None:
    request = only_request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = render(Response(200, b"0123456789"), request, keep_alive=True)
    assert raw.endswith(b"\r\n\r\n")
    _, headers, body = parse_response(raw)
    assert body == b""
    assert ("Content-Length", "10") in headers


def test_render_parts_keeps_the_body_apart() -> None:
    request = only_request(SIMPLE)
    response = Response(200, b"0123456789")
    head, body = render_parts(response, request, keep_alive=True)
    assert body is response.body  # not copied
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 10\r\n" in head
    assert render(response, request, keep_alive=True) == head + body
    head_request = only_request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert render_parts(response, head_request, keep_alive=True)[1] == b""


def test_render_408() -> None:
    status_line, headers, _ = parse_response(render(Response(408, b"t\n"), None, keep_alive=False))
    assert status_line == "HTTP/1.1 408 Request Timeout"
    assert ("Connection", "close") in headers


def test_render_protocol_error_closes() -> None:
    error = ProtocolError(431, "request head larger than 8192 bytes")
    status_line, headers, body = parse_response(render(error.response(), None, keep_alive=False))
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"
    assert ("Connection", "close") in headers
    assert body == b"request head larger than 8192 bytes\n"


def test_render_extra_headers_content_type_and_unknown_status() -> None:
    request = only_request(SIMPLE)
    response = Response(299, b"{}", content_type="application/json", extra_headers=(("Allow", "GET"),))
    status_line, headers, _ = parse_response(render(response, request, keep_alive=True))
    assert status_line == "HTTP/1.1 299 Unknown"
    assert ("Content-Type", "application/json") in headers
    assert ("Allow", "GET") in headers


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_rendered_response_is_valid_http_for_h11(method: str, keep_alive: bool) -> None:
    h11 = pytest.importorskip("h11")
    request = only_request(("%s / HTTP/1.1\r\nHost: x\r\n\r\n" % method).encode())
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(render(Response(200, b"abc"), request, keep_alive))
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    data = b""
    for _ in range(10):
        event = client.next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        data += bytes(event.data)
    assert data == (b"" if method == "HEAD" else b"abc")
    assert client.their_state is (h11.DONE if keep_alive else h11.MUST_CLOSE)
