"""The parser on random input: any chunking gives the same requests, and no input makes it raise.

The seeded tests use the standard library alone and always run; the property-based ones run
when hypothesis is installed (the `test` extra).
"""

from __future__ import annotations

import random

import pytest
from protocol_cases import cut_at, feed_all, feed_chunks

from harness.server.protocol import ProtocolError, Request, RequestParser

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # only the property-based tests need it; the seeded ones always run
    given = None  # type: ignore[assignment]


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
            headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding", "host")]
            headers.insert(draw(st.integers(0, len(headers))), ("Host", "example:8080"))
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
        chunks = cut_at(stream, cuts)
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


# --------------------------------------------------------------------------- seeded fuzz (no hypothesis needed)

FUZZ_SEEDS = range(20)


def random_stream(rng: random.Random) -> bytes:
    """A pipelined stream of valid requests: random methods, versions, headers and bodies."""
    out = b""
    for _ in range(rng.randint(1, 4)):
        version = rng.choice(["HTTP/1.0", "HTTP/1.1"])
        lines = ["%s /%s %s" % (rng.choice(["GET", "HEAD", "POST"]), rng.randint(0, 999), version)]
        lines += ["X-%d: %s" % (i, "v" * rng.randint(0, 9)) for i in range(rng.randint(0, 4))]
        if version == "HTTP/1.1" or rng.random() < 0.5:
            lines.insert(rng.randint(1, len(lines)), "Host: h:%d" % rng.randint(1, 65535))
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 30)))
        if body:
            lines.append("Content-Length: %d" % len(body))
        out += ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return out


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_seeded_random_chunking_gives_the_same_requests(seed: int) -> None:
    rng = random.Random(seed)
    stream = random_stream(rng)
    whole = feed_all(stream)
    assert whole and all(isinstance(e, Request) for e in whole), whole
    cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(0, 8)))
    assert feed_chunks(cut_at(stream, cuts)) == whole


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_seeded_random_bytes_never_raise_and_nothing_follows_an_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        # Mutate a valid stream (flip, insert, delete bytes) so that the input reaches deep states.
        data = bytearray(random_stream(rng))
        for _ in range(rng.randint(1, 5)):
            spot = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[spot] = rng.randrange(256)
            elif action == 1:
                data.insert(spot, rng.choice(b"\x00\r\n :\t\x7f"))
            else:
                del data[spot]
        parser = RequestParser()
        cut = rng.randint(0, len(data))
        events = parser.feed(bytes(data[:cut])) + parser.feed(bytes(data[cut:]))
        for i, event in enumerate(events):
            assert isinstance(event, (Request, ProtocolError))
            if isinstance(event, ProtocolError):
                assert i == len(events) - 1
                assert event.status in (400, 413, 431, 501, 505)
                assert parser.failed
