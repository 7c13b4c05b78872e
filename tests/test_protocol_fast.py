"""The parser's and the renderer's fast paths give what their general paths give.

`RequestParser.parse_whole` (one whole head in one read) against `feed` (the buffer and the
pull API); the table of parsed heads (`parse_head`) against a fresh parse; `new_request`
against the dataclass constructor; the table of rendered heads against a fresh render. The
heads are fixed cases, valid and refused, and seeded mutations of them.
"""

from __future__ import annotations

import random
from dataclasses import astuple
from typing import List, Optional

import pytest

from harness.server import protocol, render
from harness.server.protocol import (
    MAX_HEAD_BYTES,
    ProtocolError,
    Request,
    RequestParser,
    Response,
    new_request,
    parse_head,
)

TAKEN = [  # heads the fast path takes
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",  # wrk
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1\r\nUser-Agent: ApacheBench/2.3\r\n\r\n",
    b"GET /work?cpu_us=0&sleep_ms=0&bytes=64 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /work?bytes=9 HTTP/1.1\r\nhost: [::1]:80\r\nConnection: close\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Custom-Name: a\tb\r\nCookie: caf\xe9\r\n\r\n",
    b"BREW /pot HTTP/1.0\r\n\r\n",
    b"GET http://x/work HTTP/1.1\r\nhost: x\r\nHOST-like: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x85\xa0\xad\r\n\r\n",  # obs-text, not printable
]
DECLINED = [  # refused (the general path answers them with an error), or not one whole head
    b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\nX: a\r\n\r\n",
    b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
]
HEADS = TAKEN + DECLINED
BENCH_REQUEST = (  # as in test_protocol_bench.py
    b"GET /work?cpu_us=200&sleep_ms=5&bytes=1024 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"User-Agent: hangbench/0.1\r\nAccept: */*\r\n\r\n"
)
ALPHABET = (
    b"\r\n \t:\x00\x01\x0b\x7f\x85\xa0\xad\xe9\xffaZ/?=&%,;-.1HTTPGETHOSTConnection close keep-alive Content-Length"
)


def mutations(count: int, seed: int) -> List[bytes]:
    """`count` heads from HEADS with up to four bytes inserted, deleted or replaced."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(HEADS[:-1]))
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.random(), rng.randint(0, len(data) - 1)
            if op < 0.4:
                data[pos:pos] = bytes([rng.choice(ALPHABET)])
            elif op < 0.7:
                del data[pos]
            else:
                data[pos] = rng.choice(ALPHABET)
        out.append(bytes(data))
    return out


def outcome(event: object) -> object:
    """What an event says, as plain values (a Request's fields, an error's status and reason)."""
    if isinstance(event, ProtocolError):
        return ("error", event.status, event.reason)
    assert isinstance(event, Request), event
    return ("request", astuple(event))


def check_fast_equals_general(data: bytes) -> Optional[Request]:
    fast = RequestParser().parse_whole(data)
    general = RequestParser()
    events = general.feed(data)
    if fast is not None:
        assert [outcome(e) for e in events] == [outcome(fast)], data
        assert general.idle and not general.failed, data  # nothing left over: no body, no second request
    return fast


@pytest.mark.parametrize("data", HEADS, ids=range(len(HEADS)))
def test_parse_whole_gives_what_feed_gives(data: bytes) -> None:
    check_fast_equals_general(data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parse_whole_gives_what_feed_gives_for_mutated_heads(seed: int) -> None:
    taken = [check_fast_equals_general(data) is not None for data in mutations(2000, seed)]
    assert 0 < sum(taken) < len(taken)  # both ways were exercised


def test_parse_whole_takes_the_heads_clients_send() -> None:
    for data in TAKEN:
        assert isinstance(RequestParser().parse_whole(data), Request), data


@pytest.mark.parametrize("data", DECLINED, ids=range(len(DECLINED)))
def test_parse_whole_leaves_everything_else_to_the_general_path(data: bytes) -> None:
    parser = RequestParser()
    assert parser.parse_whole(data) is None
    assert parser.idle and not parser.failed  # and it changed nothing


def test_parse_whole_declines_while_the_parser_holds_something() -> None:
    whole = HEADS[0]
    partial = RequestParser()
    partial.receive_data(b"GET / HT")
    assert partial.parse_whole(whole) is None
    in_body = RequestParser()
    assert len(in_body.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")) == 1
    assert in_body.parse_whole(whole) is None
    dead = RequestParser()
    assert isinstance(dead.feed(b"\x00\x01")[0], ProtocolError)
    assert dead.parse_whole(whole) is None


def test_parse_whole_honours_a_small_max_head() -> None:
    parser = RequestParser(max_head=len(HEADS[0]) - 1)
    assert parser.parse_whole(HEADS[0]) is None
    assert RequestParser(max_head=len(HEADS[0])).parse_whole(HEADS[0]) is not None


def test_a_repeated_head_is_parsed_again_each_time() -> None:
    # No table of parsed heads: a head repeated byte for byte (a benchmark's) costs a parse
    # every time, as it does in the servers the built-ins are compared with.
    head = HEADS[0].partition(b"\r\n\r\n")[0]
    first, again = parse_head(head), parse_head(head)
    assert first == again and first[0] is not again[0]
    assert not hasattr(protocol, "_parsed")


def test_new_request_equals_the_constructor() -> None:
    args = ("GET", "/x", "HTTP/1.0", (("host", "h"), ("x", "y")), False)
    made, built = new_request(*args), Request(*args)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert vars(made) == vars(built) and type(made) is Request
    assert made.header("X") == "y"
    with pytest.raises(AttributeError):
        made.method = "POST"  # type: ignore[misc]  # still frozen


# --------------------------------------------------------------------------- rendering


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def fresh_render(response: Response, request: Optional[Request], keep_alive: bool) -> bytes:
    """What render() gives with its table of heads emptied first."""
    render._date._second = -1
    return render.render(response, request, keep_alive)


RESPONSES = [
    Response(200, b"x" * 50),
    Response(200, b""),
    Response(404, b"not found\n", "text/html"),
    Response(405, b"no\n", extra_headers=(("Allow", "GET, HEAD, POST"),)),
    Response(599, b"?"),
]
REQUESTS = [None] + [
    Request(method, "/", version, (), True) for method in ("GET", "HEAD") for version in ("HTTP/1.1", "HTTP/1.0")
]


def test_kept_heads_equal_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "time", FixedClock(1_700_000_000.5))
    for response in RESPONSES:
        for request in REQUESTS:
            for keep_alive in (True, False):
                fresh = fresh_render(response, request, keep_alive)
                for _ in range(2):  # the second from the table
                    assert protocol.render(response, request, keep_alive) == fresh
    assert b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n" in fresh


def test_heads_change_with_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FixedClock(1_700_000_000.0)
    monkeypatch.setattr(render, "time", clock)
    first = render.render(RESPONSES[0], None, True)
    clock.now += 0.9
    assert render.render(RESPONSES[0], None, True) == first
    clock.now += 0.2
    assert render.render(RESPONSES[0], None, True) == first.replace(b"22:13:20", b"22:13:21")


def test_the_table_of_heads_is_bounded_and_takes_unhashable_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "time", FixedClock(1_700_000_000.0))
    for size in range(render.MAX_CACHED_HEADS * 2):
        render.render(Response(200, b"x" * size), None, True)
    assert len(render._date.current()[1]) == render.MAX_CACHED_HEADS
    odd = Response(200, b"x", extra_headers=[("A", "b")])  # type: ignore[arg-type]  # a list: unhashable
    assert b"\r\nA: b\r\n\r\nx" in render.render(odd, None, True)


# --------------------------------------------------------------------------- benchmarks
