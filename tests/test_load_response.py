"""The sans-I/O response reader and the error classifier, without sockets."""

from __future__ import annotations

import errno

import pytest

from harness.load.metrics import CLOSED, HANG, HTTP_ERROR, MALFORMED, OK, REFUSED, RESET
from harness.load.outcome import Tally, classify_error
from harness.load.response import ResponseReader

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello"


def feed_all(reader: ResponseReader, *chunks: bytes, eof: bool = False):
    for chunk in chunks:
        kind = reader.feed(chunk)
        if kind is not None:
            return kind
    return reader.feed_eof() if eof else None


def test_complete_response_in_one_chunk_is_ok_and_reusable() -> None:
    reader = ResponseReader()
    assert reader.feed(OK_RESPONSE) == OK
    assert reader.status == 200 and reader.reusable


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_response_split_anywhere_gives_the_same_answer(size: int) -> None:
    chunks = [OK_RESPONSE[i : i + size] for i in range(0, len(OK_RESPONSE), size)]
    reader = ResponseReader()
    results = [reader.feed(chunk) for chunk in chunks]
    assert results[-1] == OK and all(r is None for r in results[:-1])


def test_reset_allows_the_next_response_on_the_same_reader() -> None:
    reader = ResponseReader()
    assert reader.feed(OK_RESPONSE) == OK
    reader.reset()
    assert reader.feed(OK_RESPONSE.replace(b"200 OK", b"404 Not Found")) == HTTP_ERROR


@pytest.mark.parametrize(
    "head, reusable",
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n", True),
    ],
)
def test_reusable_follows_version_and_connection_header(head: bytes, reusable: bool) -> None:
    reader = ResponseReader()
    assert reader.feed(head) == OK
    assert reader.reusable is reusable


def test_eof_mode_waits_for_the_close_then_checks_the_length() -> None:
    reader = ResponseReader(read_eof=True)
    assert reader.feed(OK_RESPONSE) is None  # complete by length, but the naive client waits
    assert reader.feed_eof() == OK
    assert not reader.reusable


@pytest.mark.parametrize(
    "chunks, kind",
    [
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",), CLOSED),
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world",), MALFORMED),
        ((b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno",), HTTP_ERROR),
        ((b"HTTP/1.1 200 OK\r\n\r\nany length",), OK),
    ],
)
def test_eof_mode_outcomes(chunks, kind: str) -> None:
    assert feed_all(ResponseReader(read_eof=True), *chunks, eof=True) == kind


def test_missing_content_length_is_delimited_by_the_close() -> None:
    reader = ResponseReader()
    assert reader.feed(b"HTTP/1.1 200 OK\r\n\r\nbody") is None
    assert reader.feed(b" more") is None
    assert reader.feed_eof() == OK
    assert not reader.reusable


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"garbage with no blank line",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",
    ],
)
def test_malformed_responses(data: bytes) -> None:
    assert ResponseReader().feed(data) == MALFORMED


def test_garbage_is_recognised_before_any_blank_line() -> None:
    # A server that sends junk and keeps the connection open is malformed, not a hang.
    assert ResponseReader().feed(b"junk") == MALFORMED


def test_oversized_head_is_malformed() -> None:
    reader = ResponseReader()
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") is None
    assert reader.feed(b"X-Filler: " + b"a" * 70_000) == MALFORMED


@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 200", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"])
def test_close_before_a_full_response_is_closed(data: bytes) -> None:
    reader = ResponseReader()
    if data:
        assert reader.feed(data) is None
    assert reader.feed_eof() == CLOSED


@pytest.mark.parametrize(
    "error, connecting, kind, detail",
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True, REFUSED, "ECONNREFUSED"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), False, RESET, "ECONNRESET"),
        (BrokenPipeError(errno.EPIPE, "pipe"), False, RESET, "EPIPE"),
        (TimeoutError("timed out"), True, HANG, "timeout"),
        (TimeoutError(), False, HANG, "timeout"),
        (OSError(errno.EADDRNOTAVAIL, "no ports"), True, REFUSED, "EADDRNOTAVAIL"),
        (OSError(errno.EHOSTUNREACH, "unreachable"), False, RESET, "EHOSTUNREACH"),
    ],
)
def test_classify_error(error: BaseException, connecting: bool, kind: str, detail: str) -> None:
    assert classify_error(error, connecting) == (kind, detail)


def test_tally_discards_warmup_and_records_latency_of_ok_only() -> None:
    tally = Tally()
    tally.record(OK, False, 0.001, 0.001)
    tally.record(OK, True, 0.002, 0.002)
    tally.record(RESET, True, 0.003, 0.003, detail="ECONNRESET")
    tally.record(HANG, True, 2.0, 2.0, detail="timeout")
    assert tally.warmup[OK] == 1
    assert tally.counts[OK] == 1 and tally.counts[RESET] == 1 and tally.counts[HANG] == 1
    assert tally.histogram.total_count == 1
    assert tally.detail == {"ECONNRESET": 1}
