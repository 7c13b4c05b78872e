"""The sans-I/O HTTP/1.1 parser on good and bad input, RFC 9112 conformance, and the pull API.

No sockets anywhere. Rendering is tested in test_protocol_render.py, random input in
test_protocol_fuzz.py.
"""

from __future__ import annotations

from typing import Any, Callable, List

import pytest
from protocol_cases import (
    SIMPLE,
    TLS_CLIENT_HELLO,
    feed_all,
    feed_bytewise,
    feed_chunks,
    only_error,
    only_request,
)

from harness.server.protocol import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    ProtocolError,
    Request,
    RequestParser,
    Response,
)

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
    assert [getattr(e, "target", e) for e in parser.feed(SIMPLE[-1:])] == ["/work?bytes=10"]
    assert parser.idle


def test_header_names_lowercased_values_trimmed_order_kept() -> None:
    request = only_request(b"GET / HTTP/1.1\r\nHost: x\r\nX-One:  a b \t\r\nx-TWO:\tb\r\nX-One: c\r\nEmpty:\r\n\r\n")
    assert request.headers == (("host", "x"), ("x-one", "a b"), ("x-two", "b"), ("x-one", "c"), ("empty", ""))
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
    head = "GET / %s\r\nHost: x\r\n" % version + ("Connection: %s\r\n" % connection if connection else "") + "\r\n"
    request = only_request(head.encode())
    assert request.version == version
    assert request.keep_alive is keep_alive


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    events = feed_all(data)
    assert [e.target for e in events] == ["/0", "/1", "/2", "/3", "/4"]


def test_body_is_consumed_and_discarded() -> None:
    data = (
        b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
        + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    events = feed_all(data)
    assert [(e.method, e.target) for e in events] == [("POST", "/work"), ("GET", "/next")]


def test_body_split_across_feeds() -> None:
    parser = RequestParser()
    first = parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n0123")
    assert [getattr(e, "method", e) for e in first] == ["POST"]
    assert not parser.idle  # eight body bytes still to come
    # Body bytes that look like a request must not be parsed as one.
    assert parser.feed(b"GET / ") == []
    assert not parser.idle
    assert parser.feed(b"\r\n") == []
    assert parser.idle
    assert [e.target for e in parser.feed(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")] == ["/after"]


def test_zero_content_length_and_identical_duplicates_are_accepted() -> None:
    assert only_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").method == "POST"
    events = feed_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
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
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX: y\r\n\r\n12345"
    b"HEAD /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    b"POST /d HTTP/1.1\r\nHost: x\r\ncontent-length: 1\r\n\r\nZ"
    b"GET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)


def test_stream_fed_at_once_is_what_we_expect() -> None:
    events = feed_all(STREAM)
    assert [(e.method, e.target, e.keep_alive) for e in events] == [
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
        pytest.param(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="double-space"),
        pytest.param(b"GET / HTTP/1.1 extra\r\n\r\n", 400, id="four-words"),
        pytest.param(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="bad-method"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, id="header-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", 400, id="space-in-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n", 400, id="empty-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n folded\r\n\r\n", 400, id="obs-fold"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
            id="conflicting-content-length",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, id="negative-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, id="signed-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400, id="hex-content-length"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400, id="list-content-length"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413, id="body-too-large"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, id="transfer-encoding"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
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
    assert only_error(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n").status == 400


def test_garbage_is_refused_before_a_full_head_arrives() -> None:
    # No CRLF at all: the parser must not wait for 8 KiB of a TLS handshake first.
    assert only_error(TLS_CLIENT_HELLO[:5]).status == 400
    assert only_error(b"\x80").status == 400


def test_errors_after_good_requests_come_last() -> None:
    events = feed_all(SIMPLE + SIMPLE + b"GET / HTTP/9.9\r\n\r\n" + SIMPLE)
    assert [type(e) for e in events] == [Request, Request, ProtocolError]


def test_head_of_exactly_the_limit_is_accepted() -> None:
    prefix = b"GET / HTTP/1.1\r\nHost: x\r\nX: "
    data = prefix + b"a" * (MAX_HEAD_BYTES - len(prefix) - 4) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD_BYTES
    assert isinstance(only_request(data), Request)


@pytest.mark.parametrize("feeder", [feed_all, feed_bytewise], ids=["at-once", "bytewise"])
def test_head_over_8_kib_is_431(feeder: Callable[[bytes], List[Any]]) -> None:
    prefix = b"GET / HTTP/1.1\r\nHost: x\r\nX: "
    data = prefix + b"a" * (MAX_HEAD_BYTES - len(prefix) - 3) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD_BYTES + 1
    events = feeder(data)
    assert [(type(e), e.status) for e in events] == [(ProtocolError, 431)]


def test_unterminated_head_over_8_kib_is_431_without_waiting_for_the_end() -> None:
    parser = RequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (MAX_HEAD_BYTES - 100)) == []
    events = parser.feed(b"a" * 200)
    assert [getattr(e, "status", e) for e in events] == [431]
    assert parser.failed


def test_small_max_head_is_honoured() -> None:
    parser = RequestParser(max_head=32)
    assert [getattr(e, "status", e) for e in parser.feed(b"GET /" + b"x" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n")] == [
        431
    ]


def test_error_response_text_is_the_reason() -> None:
    error = ProtocolError(400, "malformed request line")
    assert error.response() == Response(400, b"malformed request line\n")


# --------------------------------------------------------------------------- RFC 9112 conformance


def head_with(header_lines: bytes, request_line: bytes = b"GET / HTTP/1.1") -> bytes:
    return request_line + b"\r\n" + header_lines + b"\r\n"


@pytest.mark.parametrize(
    "data, reason",
    [
        pytest.param(head_with(b"Host: x\r\nX: a\x00b\r\n"), "NUL", id="nul-in-value"),
        pytest.param(head_with(b"Host: x\r\nX: a\rb\r\n"), "bare CR", id="bare-cr-in-value"),
        pytest.param(head_with(b"Host: x\r\nX: ab\r\r\n"), "bare CR", id="bare-cr-ending-value"),
        pytest.param(head_with(b"Host: x\r\nX: a\nY: b\r\n"), "bare LF", id="bare-lf-in-value"),
        pytest.param(head_with(b"Host: x\nX: a\r\n"), "bare LF", id="bare-lf-as-line-end"),
        pytest.param(head_with(b"Host: x\r\nX: a\x01b\r\n"), "control character 0x01", id="ctl-in-value"),
        pytest.param(head_with(b"Host: x\r\nX: a\x7fb\r\n"), "control character 0x7f", id="del-in-value"),
        pytest.param(head_with(b"Host: x\x00\r\n"), "NUL", id="nul-in-host"),
        pytest.param(head_with(b"Host: x\r\n", b"GET /a\x00b HTTP/1.1"), "NUL", id="nul-in-target"),
        pytest.param(head_with(b"Host: x\r\n", b"GET /a\rb HTTP/1.1"), "bare CR", id="bare-cr-in-target"),
        pytest.param(head_with(b"Host: x\r\n", b"GET /a\tb HTTP/1.1"), "target", id="tab-in-target"),
        pytest.param(head_with(b""), "without a Host", id="http11-no-host"),
        pytest.param(head_with(b"X-Host: x\r\nHostname: y\r\n"), "without a Host", id="http11-host-lookalikes"),
        pytest.param(head_with(b"Host: a\r\nHost: b\r\n"), "more than one Host", id="two-hosts"),
        pytest.param(head_with(b"Host: a\r\nhost: a\r\n"), "more than one Host", id="two-identical-hosts"),
        pytest.param(
            head_with(b"Host: a\r\nHOST: b\r\n", b"GET / HTTP/1.0"), "more than one Host", id="http10-two-hosts"
        ),
        pytest.param(head_with(b"Host: a b\r\n"), "malformed Host", id="space-in-host"),
        pytest.param(head_with(b"Host: a/b\r\n"), "malformed Host", id="slash-in-host"),
        pytest.param(head_with(b"Host: user@a\r\n"), "malformed Host", id="userinfo-in-host"),
        pytest.param(head_with(b"Host: \xe9\r\n"), "malformed Host", id="non-ascii-host"),
    ],
)
def test_rfc9112_violations_are_400(data: bytes, reason: str) -> None:
    parser = RequestParser()
    events = parser.feed(SIMPLE + data + SIMPLE)
    assert [type(e) for e in events] == [Request, ProtocolError], events
    error = events[1]
    assert isinstance(error, ProtocolError)
    assert error.status == 400
    assert reason in error.reason
    assert parser.failed


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(head_with(b"", b"GET / HTTP/1.0"), id="http10-no-host"),
        pytest.param(head_with(b"Host:\r\n"), id="empty-host"),
        pytest.param(head_with(b"Host: 127.0.0.1:8080\r\n"), id="ipv4-and-port"),
        pytest.param(head_with(b"Host: [::1]:8080\r\n"), id="ipv6-literal"),
        pytest.param(head_with(b"Host: xn--bcher-kva.example\r\n"), id="idna-name"),
        pytest.param(head_with(b"Host: x\r\nX: a\tb\r\n"), id="htab-in-value"),
        pytest.param(head_with(b"Host: x\r\nX: caf\xe9\r\n"), id="obs-text-in-value"),
        pytest.param(head_with(b"host: x\r\n", b"GET http://x/work HTTP/1.1"), id="absolute-form"),
    ],
)
def test_rfc9112_valid_heads_are_accepted(data: bytes) -> None:
    assert isinstance(only_request(data), Request)


@pytest.mark.parametrize(
    "head",
    [
        # What the real clients the test suite drives (and the harness's own load engines) send.
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\n"
        b"Accept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",  # wrk
        b"GET /work?cpu_us=0&sleep_ms=0&bytes=64 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: hangbench\r\n"
        b"Connection: keep-alive\r\n\r\n",
    ],
    ids=["curl", "ab", "wrk", "hangbench"],
)
def test_real_client_heads_are_accepted(head: bytes) -> None:
    assert isinstance(only_request(head), Request)


# --------------------------------------------------------------------------- pull API


def test_next_event_pulls_one_request_at_a_time() -> None:
    parser = RequestParser()
    parser.receive_data(SIMPLE * 3 + SIMPLE[:10])
    assert not parser.idle
    pulled = [parser.next_event() for _ in range(3)]
    assert [type(e) for e in pulled] == [Request, Request, Request]
    assert parser.next_event() is None  # the fourth is incomplete
    assert parser.in_head
    parser.receive_data(SIMPLE[10:])
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is None
    assert parser.idle and not parser.in_head


def test_receive_data_alone_parses_nothing() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/9.9\r\n\r\n")
    assert not parser.failed  # the error is found only when the event is pulled
    error = parser.next_event()
    assert isinstance(error, ProtocolError) and error.status == 505
    assert parser.failed
    parser.receive_data(SIMPLE)
    assert parser.next_event() is None


def test_in_head_is_false_while_a_body_is_pending() -> None:
    parser = RequestParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is None
    assert not parser.in_head and not parser.idle
    parser.receive_data(b"cdGET")
    assert parser.next_event() is None
    assert parser.in_head
