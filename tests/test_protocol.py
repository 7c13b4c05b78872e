"""The sans-I/O HTTP/1.1 parser and renderer, on good and bad input. No sockets anywhere."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import List, Sequence

import pytest

from harness.server.protocol import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    ProtocolError,
    Request,
    RequestParser,
    Response,
    render,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # only the property-based tests need it; they are skipped without it
    given = None  # type: ignore[assignment]

SIMPLE = b"GET /work?bytes=10 HTTP/1.1\r\nHost: example\r\n\r\n"
# The first bytes of a real TLS 1.2/1.3 ClientHello: record type 0x16, version 3.1, length, ...
TLS_CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(range(32)) + b"\x20" + bytes(32)


def feed_all(data: bytes) -> List[object]:
    return RequestParser().feed(data)


def feed_chunks(chunks: Sequence[bytes]) -> List[object]:
    parser = RequestParser()
    events: List[object] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def feed_bytewise(data: bytes) -> List[object]:
    return feed_chunks([data[i : i + 1] for i in range(len(data))])


def only_request(data: bytes) -> Request:
    events = feed_all(data)
    assert len(events) == 1 and isinstance(events[0], Request), events
    return events[0]


def only_error(data: bytes) -> ProtocolError:
    events = feed_all(data)
    assert len(events) == 1 and isinstance(events[0], ProtocolError), events
    return events[0]


# --------------------------------------------------------------------------- good requests


def test_simple_get() -> None:
    request = only_request(SIMPLE)
    assert request.method == "GET"
    assert request.target == "/work?bytes=10"
    assert request.version == "HTTP/1.1"
    assert request.headers == (("host", "example"),)
    assert request.keep_alive is True


def test_incomplete_head_yields_nothing_yet() -> None:
    parser = RequestParser()
    assert parser.feed(SIMPLE[:-1]) == []
    assert not parser.idle
    assert [e.target for e in parser.feed(SIMPLE[-1:])] == ["/work?bytes=10"]  # type: ignore[attr-defined]
    assert parser.idle


def test_header_names_lowercased_values_trimmed_order_kept() -> None:
    request = only_request(b"GET / HTTP/1.1\r\nX-One:  a b \t\r\nx-TWO:\tb\r\nX-One: c\r\nEmpty:\r\n\r\n")
    assert request.headers == (("x-one", "a b"), ("x-two", "b"), ("x-one", "c"), ("empty", ""))
    assert request.header("X-ONE") == "a b"  # the first of a repeated header
    assert request.header("x-two") == "b"
    assert request.header("missing") is None


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Keep-Alive", True),
        ("HTTP/1.0", "close", False),
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "keep-alive", True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "CLOSE", False),
        ("HTTP/1.1", "upgrade, close", False),
        ("HTTP/1.0", "te, keep-alive", True),
    ],
)
def test_keep_alive_by_version_and_connection_header(version: str, connection: str, keep_alive: bool) -> None:
    head = "GET / %s\r\n" % version + ("Connection: %s\r\n" % connection if connection else "") + "\r\n"
    request = only_request(head.encode())
    assert request.version == version
    assert request.keep_alive is keep_alive


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(5))
    events = feed_all(data)
    assert [e.target for e in events] == ["/0", "/1", "/2", "/3", "/4"]  # type: ignore[attr-defined]


def test_body_is_consumed_and_discarded() -> None:
    data = b"POST /work HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world" + b"GET /next HTTP/1.1\r\n\r\n"
    events = feed_all(data)
    assert [(e.method, e.target) for e in events] == [("POST", "/work"), ("GET", "/next")]  # type: ignore[attr-defined]


def test_body_split_across_feeds() -> None:
    parser = RequestParser()
    first = parser.feed(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n0123")
    assert [e.method for e in first] == ["POST"]  # type: ignore[attr-defined]
    assert not parser.idle  # eight body bytes still to come
    # Body bytes that look like a request must not be parsed as one.
    assert parser.feed(b"GET / ") == []
    assert not parser.idle
    assert parser.feed(b"\r\n") == []
    assert parser.idle
    assert [e.target for e in parser.feed(b"GET /after HTTP/1.1\r\n\r\n")] == ["/after"]  # type: ignore[attr-defined]


def test_zero_content_length_and_identical_duplicates_are_accepted() -> None:
    assert only_request(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method == "POST"
    events = feed_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")
    assert [type(e) for e in events] == [Request, Request]


def test_stray_crlf_between_requests_is_tolerated() -> None:
    data = b"\r\n\r\n" + SIMPLE + b"\r\n" + SIMPLE + b"\r\n\r\n\r\n" + SIMPLE
    assert [type(e) for e in feed_all(data)] == [Request, Request, Request]


def test_stray_crlf_split_between_feeds_is_tolerated() -> None:
    assert [type(e) for e in feed_chunks([SIMPLE + b"\r", b"\n" + SIMPLE])] == [Request, Request]


# A stream exercising every branch that keeps state between feeds: pipelining, bodies, both
# versions, both Connection forms.
STREAM = (
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    b"POST /b HTTP/1.1\r\nContent-Length: 5\r\nX: y\r\n\r\n12345"
    b"HEAD /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    b"POST /d HTTP/1.1\r\ncontent-length: 1\r\n\r\nZ"
    b"GET /e HTTP/1.1\r\nConnection: close\r\n\r\n"
)


def test_stream_fed_at_once_is_what_we_expect() -> None:
    events = feed_all(STREAM)
    assert [(e.method, e.target, e.keep_alive) for e in events] == [  # type: ignore[attr-defined]
        ("GET", "/a", True),
        ("POST", "/b", True),
        ("HEAD", "/c", True),
        ("POST", "/d", True),
        ("GET", "/e", False),
    ]


def test_every_byte_split_gives_the_same_requests() -> None:
    whole = feed_all(STREAM)
    assert feed_bytewise(STREAM) == whole
    for cut in range(len(STREAM) + 1):
        assert feed_chunks([STREAM[:cut], STREAM[cut:]]) == whole, cut


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "data, status",
    [
        pytest.param(b"\x00\x01\x02\x03\xff\xfe", 400, id="binary"),
        pytest.param(TLS_CLIENT_HELLO, 400, id="tls-client-hello"),
        pytest.param(b"GET / HTTP/9.9\r\n\r\n", 505, id="http-9.9"),
        pytest.param(b"GET / HTTP/2.0\r\n\r\n", 505, id="http-2.0"),
        pytest.param(b"GET /\r\n\r\n", 400, id="missing-version"),
        pytest.param(b"GET / FTP/1.0\r\n\r\n", 400, id="not-http-version"),
        pytest.param(b"GET  / HTTP/1.1\r\n\r\n", 400, id="double-space"),
        pytest.param(b"GET / HTTP/1.1 extra\r\n\r\n", 400, id="four-words"),
        pytest.param(b"G(T / HTTP/1.1\r\n\r\n", 400, id="bad-method"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, id="header-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, id="space-in-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\n: no name\r\n\r\n", 400, id="empty-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, id="obs-fold"),
        pytest.param(
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, id="conflicting-content-length"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, id="negative-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400, id="signed-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, id="hex-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400, id="list-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413, id="body-too-large"),
        pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, id="transfer-encoding"),
        pytest.param(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            501,
            id="te-and-content-length",
        ),
    ],
)
def test_bad_input_gets_an_error_and_kills_the_parser(data: bytes, status: int) -> None:
    parser = RequestParser()
    events = parser.feed(data)
    assert len(events) == 1 and isinstance(events[0], ProtocolError), events
    assert events[0].status == status
    assert events[0].reason
    assert parser.failed
    assert parser.feed(SIMPLE) == []  # dead: nothing more, even valid input


@pytest.mark.parametrize("value", [b"\xb2", b"1" * 5000], ids=["superscript-two", "5000-digits"])
def test_content_length_that_isdigit_but_not_int_is_a_400(value: bytes) -> None:
    assert only_error(b"GET / HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n").status == 400


def test_garbage_is_refused_before_a_full_head_arrives() -> None:
    # No CRLF at all: the parser must not wait for 8 KiB of a TLS handshake first.
    assert only_error(TLS_CLIENT_HELLO[:5]).status == 400
    assert only_error(b"\x80").status == 400


def test_errors_after_good_requests_come_last() -> None:
    events = feed_all(SIMPLE + SIMPLE + b"GET / HTTP/9.9\r\n\r\n" + SIMPLE)
    assert [type(e) for e in events] == [Request, Request, ProtocolError]


def test_head_of_exactly_the_limit_is_accepted() -> None:
    prefix = b"GET / HTTP/1.1\r\nX: "
    data = prefix + b"a" * (MAX_HEAD_BYTES - len(prefix) - 4) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD_BYTES
    assert isinstance(only_request(data), Request)


@pytest.mark.parametrize("feeder", [feed_all, feed_bytewise], ids=["at-once", "bytewise"])
def test_head_over_8_kib_is_431(feeder) -> None:  # type: ignore[no-untyped-def]
    prefix = b"GET / HTTP/1.1\r\nX: "
    data = prefix + b"a" * (MAX_HEAD_BYTES - len(prefix) - 3) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD_BYTES + 1
    events = feeder(data)
    assert [(type(e), e.status) for e in events] == [(ProtocolError, 431)]  # type: ignore[attr-defined]


def test_unterminated_head_over_8_kib_is_431_without_waiting_for_the_end() -> None:
    parser = RequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES - 100)) == []
    events = parser.feed(b"a" * 200)
    assert [e.status for e in events] == [431]  # type: ignore[attr-defined]
    assert parser.failed


def test_small_max_head_is_honoured() -> None:
    parser = RequestParser(max_head=32)
    assert [e.status for e in parser.feed(b"GET /" + b"x" * 40 + b" HTTP/1.1\r\n\r\n")] == [431]  # type: ignore[attr-defined]


def test_error_response_text_is_the_reason() -> None:
    error = ProtocolError(400, "malformed request line")
    assert error.response() == Response(400, b"malformed request line\n")


# --------------------------------------------------------------------------- render


def parse_response(raw: bytes):  # type: ignore[no-untyped-def]
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    return status_line, headers, body


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
    request = only_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    _, headers, _ = parse_response(render(Response(200, b"x"), request, keep_alive=False))
    assert ("Connection", "close") in headers


def test_render_http10_keep_alive_says_so() -> None:
    request = only_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status_line, headers, _ = parse_response(render(Response(200, b"x"), request, keep_alive=True))
    assert status_line.startswith("HTTP/1.1 200")
    assert ("Connection", "keep-alive") in headers


def test_render_head_has_length_but_no_body() -> None:
    request = only_request(b"HEAD / HTTP/1.1\r\n\r\n")
    raw = render(Response(200, b"0123456789"), request, keep_alive=True)
    assert raw.endswith(b"\r\n\r\n")
    _, headers, body = parse_response(raw)
    assert body == b""
    assert ("Content-Length", "10") in headers


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


# --------------------------------------------------------------------------- property-based

if given is not None:

    @st.composite
    def request_streams(draw: st.DrawFn) -> bytes:
        token = st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
        value = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ;=,./", max_size=20).map(str.strip)
        out = b""
        for _ in range(draw(st.integers(1, 4))):
            method = draw(st.sampled_from(["GET", "HEAD", "POST", "OPTIONS"]))
            version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1"]))
            path = "/" + draw(st.text("abcdefghij/?=&%0123456789", max_size=30))
            headers = draw(st.lists(st.tuples(token, value), max_size=5))
            headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
            body = draw(st.binary(max_size=40))
            if body:
                headers.append(("Content-Length", str(len(body))))
            head = "%s %s %s\r\n" % (method, path, version) + "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
            out += head.encode("latin-1") + body
        return out

    @settings(max_examples=200, deadline=None)
    @given(stream=request_streams(), data=st.data())
    def test_any_chunking_gives_the_same_requests(stream: bytes, data: st.DataObject) -> None:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        whole = feed_all(stream)
        assert all(isinstance(e, Request) for e in whole)
        assert feed_chunks(chunks) == whole

    @settings(max_examples=300, deadline=None)
    @given(garbage=st.binary(max_size=200), cut=st.integers(0, 200))
    def test_arbitrary_bytes_never_raise_and_nothing_follows_an_error(garbage: bytes, cut: int) -> None:
        parser = RequestParser()
        events = parser.feed(garbage[:cut]) + parser.feed(garbage[cut:])
        for i, event in enumerate(events):
            assert isinstance(event, (Request, ProtocolError))
            if isinstance(event, ProtocolError):
                assert i == len(events) - 1
                assert 400 <= event.status < 600
                assert parser.failed

else:

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_property_based() -> None:
        pass
