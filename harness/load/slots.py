"""The asyncio engine's slots: one connection each, a small state machine driven by callbacks.

A slot issues a request, waits for its outcome (response, error, or the deadline the engine's
ticker enforces) and then does what its load model says next (`next_request`): the closed loop
sends again at once, the open loop's pooled connection takes the oldest waiting request or goes
back to the pool, the paced closed loop waits for its next start on its grid. Keep-alive
connections run on a transport (`Conn`, a Protocol); connection-per-request ones on a raw
socket (rawconn.py), with the same slot events, outcomes and milestones.

The hot path: in a plain closed loop almost every response is the same bytes as the last one
decided `ok` (response.py keeps them), measured, in time and inside the window. `on_data` takes
such a response in a few steps -- no parse, no `admit` call, no finish/begin/send chain -- and
records and sends exactly what the long way would (tests/test_load_hotpath.py plays scripted
exchanges both ways and compares). It halves the client's Python per keep-alive request, which
is what lets one client process keep up with wrk's C (docs/load-generator.md).

Split from engine_asyncio.py, which keeps the run (`Run`): the ticker, the dispatcher and the
result; a slot reaches the run's shared state through `self.run`.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING

from .metrics import HANG, MALFORMED, OK
from .outcome import classify_error
from .rawconn import RawConn
from .response import ResponseReader
from .schedule import MEASURED, STOP
from .timeline import CONNECT_START, CONNECTED, FIN, FIRST_BYTE, REQUEST_WRITTEN, RESPONSE_COMPLETE, RST

if TYPE_CHECKING:
    from .engine_asyncio import Run

IDLE, CONNECTING, WAITING = 0, 1, 2


class Conn(asyncio.Protocol):
    """One TCP connection of a slot; forwards events tagged with itself so that the slot can
    ignore a connection it has already given up on."""

    __slots__ = ("slot", "transport")

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.transport: asyncio.Transport | None = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.slot.on_connected(self)

    def data_received(self, data: bytes) -> None:
        self.slot.on_data(self, data)

    def eof_received(self) -> bool:
        self.slot.on_eof(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.on_lost(self, exc)


class Slot:
    """One closed-loop client: issues a request, waits for its outcome, issues the next."""

    __slots__ = (
        "conn",
        "first",
        "marks",
        "measured",
        "port",
        "raw",
        "reader",
        "run",
        "sent_at",
        "state",
        "t0",
        "task",
        "ts",
    )

    def __init__(self, run: Run) -> None:
        self.run = run
        self.conn: Conn | RawConn | None = None
        self.state = IDLE
        self.t0 = 0.0  # intended start of the current request (closed loop: its send)
        self.ts = 0.0  # actual start (send, or connect) of the current request
        self.measured = False
        self.reader = ResponseReader(read_eof=run.read_eof, keep_alive=run.keep_alive)
        self.task: asyncio.Task[None] | None = None
        # The current request's milestones (harness.load.timeline), kept only if it hangs or
        # fails: its first one (`first`, at `ts`) and, for a new connection, when it was up with
        # the request sent (`sent_at`, 0.0 until then) are plain fields; the (milestone, time)
        # list is made from them only when a later milestone comes or the request is booked
        # (`timeline`), so a request that succeeds at once allocates nothing for them. Also the
        # client port of the current connection: read when it connects (transport path), or
        # asked of its raw connection only if the request fails.
        self.first = CONNECT_START
        self.sent_at = 0.0
        self.marks: list[tuple[str, float]] | None = None
        self.port: int | None = None
        self.raw: RawConn | None = None

    # -- issuing -----------------------------------------------------------------------------
    def begin(self) -> None:
        """Closed loop: ask the schedule, then send at once (intended start = now)."""
        run = self.run
        now = monotonic()
        admitted = run.schedule.admit(now)
        if admitted == STOP:
            self.state = IDLE
            self.drop(abort=False)
            run.slot_idle()
            return
        self.send(now, admitted == MEASURED, now)

    def send(self, intended: float, measured: bool, now: float) -> None:
        """Send one request whose latency counts from `intended` (its service time from now)."""
        run = self.run
        self.measured = measured
        self.t0 = intended
        self.ts = now
        if not self.reader.fresh:  # a reader fed nothing since its reset is reset already
            self.reader.reset()
        conn = self.conn
        if conn is not None:
            self.state = WAITING
            conn.transport.write(run.request)  # type: ignore[union-attr]
            self.first, self.marks = REQUEST_WRITTEN, None
            return
        self.first, self.sent_at, self.marks = CONNECT_START, 0.0, None
        self.state = CONNECTING
        self.port = None
        poller = run.poller
        if poller is not None:  # close mode: a raw socket, no task or transport (rawconn.py)
            self.conn = self.raw = raw = RawConn(self, poller)
            raw.start(run.request)
            return
        self.conn = conn = Conn(self)
        task = run.loop.create_task(self.connect(conn))
        self.task = task
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)

    async def connect(self, conn: Conn) -> None:
        run = self.run
        try:
            await run.loop.create_connection(lambda: conn, run.address, run.port, family=run.family)
        except asyncio.CancelledError:
            return  # the slot gave up (deadline or shutdown) and has moved on
        except Exception as error:
            self.on_connect_error(conn, error)

    def finish(self, kind: str, now: float | None = None, detail: str | None = None) -> None:
        """The current request ended with `kind` (at `now`, read here if not given)."""
        run = self.run
        if now is None:
            now = monotonic()
        latency = now - self.t0
        if latency >= run.deadline:
            kind = HANG
        self.state = IDLE
        run.tally.record(kind, self.measured, now, latency, now - self.ts, detail)
        if kind != OK and self.measured and run.schedule.stopped_at is None:
            port = self.port if self.raw is None else self.raw.client_port()
            run.book.add(kind, self.t0, self.timeline(), port, hung=kind == HANG)
        self.next_request(now)

    def next_request(self, now: float) -> None:
        self.begin()

    def drop(self, abort: bool) -> None:
        """Forget the current connection, closing it (abort: at once, without a FIN wait)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            if abort:
                conn.abort()
            else:
                conn.close()

    # -- connection events -------------------------------------------------------------------
    def on_connect_error(self, conn: Conn | RawConn, error: Exception) -> None:
        if conn is self.conn and self.state == CONNECTING:
            self.conn = None
            kind, detail = classify_error(error, connecting=True)
            self.finish(kind, detail=detail)

    def on_sent(self, conn: RawConn) -> None:
        """A raw connection is up and has the request (close mode)."""
        if conn is not self.conn or self.state != CONNECTING:
            conn.abort()  # given up on already
            return
        self.state = WAITING
        self.sent_at = monotonic()  # connected, and the request handed to the kernel (timeline)

    def on_connected(self, conn: Conn) -> None:
        if conn is not self.conn or self.state != CONNECTING:
            conn.abort()  # given up on already
            return
        self.state = WAITING
        conn.transport.write(self.run.request)  # type: ignore[union-attr]
        self.sent_at = monotonic()  # connected, and the request handed to the transport (timeline)
        sockname = conn.transport.get_extra_info("sockname")  # type: ignore[union-attr]
        self.port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None

    def on_data(self, conn: Conn | RawConn, data: bytes) -> None:
        if conn is not self.conn or self.state != WAITING:
            return
        # One clock read per response: a response that arrives whole is first byte and end at
        # once, and the first-byte milestone is only kept for a request that fails or hangs.
        now = monotonic()
        reader = self.reader
        run = self.run
        if run.hot and reader.fresh and data == reader.whole_ok and self.measured:
            # The hot path of a closed loop: the same bytes as the last response decided `ok`
            # whole, so the same outcome (response.py), measured, within the deadline and the
            # measurement window: what finish, begin and send do for it, with fewer steps.
            latency = now - self.t0
            start = monotonic()
            # measured: this request started in the window, so the next one cannot be before it
            if latency < run.deadline and start < run.schedule.open_until:
                run.tally.record_ok(now, latency, latency)  # closed loop: its service time is its latency
                if run.keep_alive:
                    self.t0 = self.ts = start
                    conn.transport.write(run.request)  # type: ignore[union-attr]
                    self.first, self.marks = REQUEST_WRITTEN, None
                else:
                    self.drop(abort=False)
                    self.send(start, True, start)
                return
        kind = reader.feed(data)
        if kind is None:
            marks = self.first_byte(now)
            if run.read_eof and marks[-1][0] != RESPONSE_COMPLETE and reader.body_complete():
                marks.append((RESPONSE_COMPLETE, now))  # all of it; now it waits for the FIN
            return
        if kind != OK or now - self.t0 >= run.deadline:  # it fails, or hangs (finish): its timeline is kept
            self.first_byte(now)
        if kind == MALFORMED:
            self.drop(abort=True)
        elif not (run.keep_alive and reader.reusable):
            self.drop(abort=False)
        self.finish(kind, now)

    def first_byte(self, now: float) -> list[tuple[str, float]]:
        """The timeline, with the first-byte milestone at `now` if no byte had come yet."""
        marks = self.timeline()
        if marks[-1][0] == REQUEST_WRITTEN:
            marks.append((FIRST_BYTE, now))
        return marks

    def on_eof(self, conn: Conn | RawConn) -> None:
        if conn is not self.conn:
            return
        self.conn = None  # it closes itself (eof_received returns False; a RawConn on return)
        if self.state == WAITING:
            self.timeline().append((FIN, monotonic()))
            self.finish(self.reader.feed_eof())

    def on_lost(self, conn: Conn | RawConn, exc: Exception | None) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        if self.state != WAITING:
            return
        self.timeline().append((FIN if exc is None else RST, monotonic()))
        if exc is None:
            self.finish(self.reader.feed_eof())
        else:
            kind, detail = classify_error(exc, connecting=False)
            self.finish(kind, detail=detail)

    def timeline(self) -> list[tuple[str, float]]:
        """The current request's (milestone, time) list, made from the plain fields on first use."""
        marks = self.marks
        if marks is None:
            marks = [(self.first, self.ts)]
            if self.first == CONNECT_START and self.sent_at:
                marks.append((CONNECTED, self.sent_at))
                marks.append((REQUEST_WRITTEN, self.sent_at))
            self.marks = marks
        return marks

    # -- ticker ------------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        if self.state != IDLE and now - self.t0 >= self.run.deadline:
            if self.state == CONNECTING and self.task is not None:
                self.task.cancel()
            self.drop(abort=True)
            self.finish(HANG)

    def abandon(self) -> None:
        """Shutdown: end whatever is in flight without counting it."""
        if self.task is not None:
            self.task.cancel()
        self.drop(abort=True)
        self.state = IDLE


class OpenSlot(Slot):
    """One pooled connection of an open-loop run: sends what the dispatcher hands it, then
    takes the oldest waiting request or returns to the free pool."""

    __slots__ = ()

    def next_request(self, now: float) -> None:
        run = self.run
        waiting = run.open_loop.next_waiting(now)  # type: ignore[union-attr]
        if waiting is not None:
            self.send(waiting[0], waiting[1], now)
            return
        run.free.append(self)
        if now >= run.open_loop.next_due:  # type: ignore[union-attr]  # due already: no timer wait
            run.send_due(now)
        else:
            run.check_done()


class PacedSlot(Slot):
    """One connection of a paced closed loop (Locust's constant_throughput): its requests start
    on a grid one pace period apart, each once the previous response is in. A slot that fell
    behind starts at once and continues the grid from there: no catch-up burst."""

    __slots__ = ("due",)

    def __init__(self, run: Run, due: float) -> None:
        super().__init__(run)
        self.due = due  # the planned start of this slot's next request

    def next_request(self, now: float) -> None:
        run = self.run
        self.due = max(self.due + run.pace_s, now)
        when = min(self.due, run.schedule.measure_end)  # past the end: admit() stops it
        if when <= now:
            self.begin()
        else:
            run.timers.call_at(when, self.begin)  # type: ignore[union-attr]
