"""The client's hot-path shortcuts decide exactly as the long way round.

`ResponseReader` remembers the last response that came whole in one chunk and answers the same
bytes again without parsing them: here every kind of response, fed twice and in any order to one
reader, must give what a fresh reader gives (outcome, status, reusability, and what it does with
bytes after the decision). The asyncio engine freezes the collector's view of older objects
during a run: it must thaw it again, whether the run ends or fails.
"""

from __future__ import annotations

import gc
import itertools
from typing import List, Optional, Tuple

import pytest

from harness.load import engine_asyncio
from harness.load.response import ResponseReader
from harness.load.workload import Workload

OK_KEEP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
OK_OTHER_DATE = b"HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 03:55:30 GMT\r\nContent-Length: 2\r\n\r\nhi"
ERROR = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
HTTP10 = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"
TOO_LONG = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy"  # bytes past the body: malformed
BAD_HEAD = b"HTTP/1.1 2x0 OK\r\n\r\n"
NO_LENGTH = b"HTTP/1.1 200 OK\r\n\r\nbody"  # delimited by the close: undecided after the chunk
HALF_HEAD = b"HTTP/1.1 200 OK\r\nContent-Le"
RESPONSES = [OK_KEEP, OK_CLOSE, OK_OTHER_DATE, ERROR, NO_CONTENT, HTTP10, TOO_LONG, BAD_HEAD, NO_LENGTH, HALF_HEAD]

Seen = Tuple[Optional[str], int, bool, Optional[str], str]


def observe(reader: ResponseReader, data: bytes) -> Seen:
    """Everything a caller can see after feeding `data` to a reset reader, then one byte more
    and the end of the stream."""
    reader.reset()
    kind = reader.feed(data)
    status, reusable = reader.status, reader.reusable
    more = reader.feed(b"z")
    return kind, status, reusable, more, reader.feed_eof()


@pytest.mark.parametrize("read_eof", [False, True])
def test_a_remembered_response_decides_as_a_fresh_parse(read_eof: bool) -> None:
    reader = ResponseReader(read_eof=read_eof)
    for first, second in itertools.product(RESPONSES, repeat=2):
        for data in (first, second, first, first):
            assert observe(reader, data) == observe(ResponseReader(read_eof=read_eof), data), (first, second)


def test_a_response_split_over_chunks_after_a_remembered_one() -> None:
    reader = ResponseReader()
    assert observe(reader, OK_KEEP)[0] == "ok"
    reader.reset()
    assert reader.feed(OK_KEEP[:10]) is None  # a head in pieces is never answered from memory
    assert reader.feed(OK_KEEP[10:]) == "ok"
    reader.reset()
    assert reader.feed(OK_KEEP[:10]) is None
    assert reader.feed(OK_KEEP) == "malformed"  # the same bytes, but after a partial head


def test_a_run_thaws_the_collector_even_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))

    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the run failed")

    monkeypatch.setattr(engine_asyncio.Run, "__init__", fail)
    with pytest.raises(RuntimeError, match="the run failed"):
        engine_asyncio.run(Workload("127.0.0.1", 9, duration_s=0.1, warmup_s=0.0))
    assert calls == ["freeze", "unfreeze"]
