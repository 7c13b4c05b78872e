"""The client's hot-path shortcuts decide exactly as the long way round.

`ResponseReader` remembers the last response that came whole in one chunk and answers the same
bytes again without parsing them: here every kind of response, fed twice and in any order to one
reader, must give what a fresh reader gives (outcome, status, reusability, and what it does with
bytes after the decision). The engine's slots take a repeated whole `ok` response without the
reader, the schedule's call or the long chain of finish/begin/send: scripted exchanges played
with that hot path and without it must record the same. The asyncio engine freezes the collector's view of older objects
during a run: it must thaw it again, whether the run ends or fails.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from dataclasses import replace
from typing import List, Optional, Tuple

import pytest

from harness.load import engine_asyncio, slots
from harness.load.outcome import Tally
from harness.load.response import ResponseReader
from harness.load.schedule import Schedule
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


# -- the slots' hot path (Slot.on_data) ------------------------------------------------------
# A scripted exchange is played twice through one closed-loop slot, with a clock that moves only
# between the script's steps: once with the hot path allowed, once with it off. Both must leave the
# same tally (counts, latencies per second, warm-up), the same requests written, the same
# milestones and the same connections closed: the hot path is a shortcut, not another rule.

OK_DATED = OK_KEEP.replace(b"hello", b"howdy")


class FakeTransport:
    def __init__(self, log: List[str]) -> None:
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append("write")

    def close(self) -> None:
        self.log.append("close")

    def abort(self) -> None:
        self.log.append("abort")

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 4242) if name == "sockname" else None


class FakeTask:
    def add_done_callback(self, callback: object) -> None:
        pass

    def cancel(self) -> None:
        pass


class FakeLoop:
    """Stands in for the run's loop: a keep-alive connect is a task that is never run."""

    def create_task(self, coroutine: asyncio.Future[None]) -> FakeTask:
        coroutine.close()  # type: ignore[attr-defined]
        return FakeTask()


class FakeRaw:
    """A close-mode connection that is up and has the request the moment it starts."""

    def __init__(self, slot: slots.Slot, log: List[str]) -> None:
        self.slot = slot
        self.log = log

    def start(self, request: bytes) -> None:
        self.log.append("connect+write")
        self.slot.on_sent(self)  # type: ignore[arg-type]

    def client_port(self) -> int:
        return 4242

    def close(self) -> None:
        self.log.append("close")

    def abort(self) -> None:
        self.log.append("abort")


def play(
    monkeypatch: pytest.MonkeyPatch, hot: bool, connection: str, script: List[Tuple[float, Optional[bytes]]]
) -> Tuple:
    """Play `script` ((seconds to wait, chunk or None: stop), ...) through one slot; everything
    it recorded."""
    clock = [1000.0]
    monkeypatch.setattr(slots, "monotonic", lambda: clock[0])
    log: List[str] = []
    monkeypatch.setattr(slots, "RawConn", lambda slot, _poller: FakeRaw(slot, log))
    loop = asyncio.new_event_loop()
    try:
        work = Workload("127.0.0.1", 9, concurrency=1, duration_s=0.05, warmup_s=0.01, connection=connection)
        work = replace(work, deadline_s=0.02)
        run = engine_asyncio.Run(work, loop, "test", None, None)
        run.hot = hot and run.hot
        run.schedule = Schedule(work, clock[0])
        run.tally = Tally(run.schedule.measure_start)
        if connection == "close":
            run.poller = object()  # type: ignore[assignment]  # connections are FakeRaw
        run.loop = FakeLoop()  # type: ignore[assignment]  # a keep-alive connect: made up below
        slot = slots.Slot(run)
        run.slots = [slot]

        def current() -> object:
            conn = slot.conn
            if isinstance(conn, slots.Conn) and conn.transport is None:  # connecting: up now
                conn.transport = FakeTransport(log)  # type: ignore[assignment]
                slot.on_connected(conn)
            return slot.conn

        slot.begin()
        for wait_s, chunk in script:
            clock[0] += wait_s
            if chunk is None:  # the caller's stop (Ctrl-C)
                run.schedule.stop(clock[0])
                continue
            conn = current()
            if slot.state == slots.IDLE:
                break
            slot.on_data(conn, chunk)  # type: ignore[arg-type]
        series = [(counts, h.encode()) for counts, h in run.tally.series()]
        return (
            series,
            dict(run.tally.warmup),
            run.tally.last_end,
            list(log),
            list(slot.timeline()),
            slot.state,
            run.schedule.tickets,
            run.idle,
            list(run.book.timelines),
            dict(run.book.hang_milestones),
        )
    finally:
        loop.close()


def scripts() -> List[Tuple[str, List[Tuple[float, Optional[bytes]]]]]:
    same: List[Tuple[float, Optional[bytes]]] = [(0.0005, OK_KEEP)] * 120  # warm-up, window, its end
    return [
        ("same", same),
        ("changing", [(0.0004, [OK_KEEP, OK_DATED, OK_KEEP, ERROR, OK_KEEP][i % 5]) for i in range(120)]),
        ("split", [(0.0003, [OK_KEEP[:7], OK_KEEP[7:], OK_KEEP][i % 3]) for i in range(150)]),
        ("slow", [(0.0005 if i % 9 else 0.021, OK_KEEP) for i in range(100)]),  # some past the deadline
        ("closing", [(0.0005, OK_CLOSE if i % 4 == 3 else OK_KEEP) for i in range(100)]),
        ("stopped", [*same[:40], (0.0, None), *same[40:]]),
    ]


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
@pytest.mark.parametrize("name, script", scripts(), ids=[name for name, _ in scripts()])
def test_the_hot_path_records_what_the_long_way_records(
    monkeypatch: pytest.MonkeyPatch, connection: str, name: str, script: List[Tuple[float, Optional[bytes]]]
) -> None:
    taken = []
    original = ResponseReader.feed

    def counting_feed(self: ResponseReader, data: bytes) -> Optional[str]:
        taken.append(data)
        return original(self, data)

    monkeypatch.setattr(ResponseReader, "feed", counting_feed)
    long_way = play(monkeypatch, False, connection, script)
    fed_long = len(taken)
    taken.clear()
    hot = play(monkeypatch, True, connection, script)
    assert hot == long_way
    assert sum(counts["ok"] for counts, _histogram in long_way[0]) > 0
    if name != "split":  # a response in pieces always goes the long way
        assert len(taken) < fed_long - 10, "the hot path was not taken"  # it skips the reader
    if name == "slow":  # a whole response past the deadline: a hang that got its bytes
        assert hot[-1] and set(hot[-1]) == {"partial response"}


def test_the_reader_offers_only_a_whole_ok_response_for_the_hot_path() -> None:
    reader = ResponseReader(keep_alive=True)
    assert reader.fresh and reader.whole_ok is None
    assert reader.feed(OK_KEEP) == "ok"
    assert not reader.fresh and reader.whole_ok == OK_KEEP
    reader.reset()
    assert reader.feed(OK_CLOSE) == "ok"  # ok, but the connection cannot carry another
    assert reader.whole_ok is None
    reader.reset()
    assert reader.feed(ERROR) == "http_error" and reader.whole_ok is None
    reader.reset()
    assert reader.feed(OK_KEEP[:9]) is None and reader.feed(OK_KEEP[9:]) == "ok"
    assert reader.whole_ok is None  # decided over two chunks
    closing = ResponseReader(keep_alive=False)
    assert closing.feed(OK_CLOSE) == "ok" and closing.whole_ok == OK_CLOSE
    eof = ResponseReader(read_eof=True, keep_alive=False)
    assert eof.feed(OK_CLOSE) is None and eof.whole_ok is None  # ends at the close, never by length
