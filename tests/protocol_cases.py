"""Shared helpers for the parser tests (not a test module): sample requests and feeding helpers."""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from harness.server.protocol import ProtocolError, Request, RequestParser

SIMPLE = b"GET /work?bytes=10 HTTP/1.1\r\nHost: example\r\n\r\n"
# The first bytes of a real TLS 1.2/1.3 ClientHello: record type 0x16, version 3.1, length, ...
TLS_CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(range(32)) + b"\x20" + bytes(32)


def feed_all(data: bytes) -> List[Any]:
    return RequestParser().feed(data)


def feed_chunks(chunks: Sequence[bytes]) -> List[Any]:
    parser = RequestParser()
    events: List[Any] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def cut_at(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    """`data` cut at the (sorted) offsets `cuts`."""
    bounds = [0, *cuts, len(data)]
    return [data[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def feed_bytewise(data: bytes) -> List[Any]:
    return feed_chunks([data[i : i + 1] for i in range(len(data))])


def only_request(data: bytes) -> Request:
    events = feed_all(data)
    assert len(events) == 1 and isinstance(events[0], Request), events
    return events[0]


def only_error(data: bytes) -> ProtocolError:
    events = feed_all(data)
    assert len(events) == 1 and isinstance(events[0], ProtocolError), events
    return events[0]


def parse_response(raw: bytes) -> Tuple[str, List[Tuple[str, str]], bytes]:
    """(status line, [(name, value)], body) of one rendered response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status_line, headers, body
