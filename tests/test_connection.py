"""HttpSession: the per-connection state every strategy shares, driven without any I/O.

The I/O adapters around it (serve_blocking, serve_asyncio, peer_closed) are tested in
test_connection_io.py.
"""

from __future__ import annotations

import time
from typing import List

import pytest
from session_cases import Counting, app, drive, get, split_responses

from harness.server.app import MAX_CPU_US, MAX_SLEEP_MS, App, Work
from harness.server.connection import HttpSession
from harness.server.protocol import Request, Response

# --------------------------------------------------------------------------- HttpSession


def test_keep_alive_session_stays_open_across_requests() -> None:
    session = HttpSession(app())
    for i in range(3):
        [(status, headers, body)] = split_responses(drive(session, get("/work?bytes=%d" % i)))
        assert status == 200 and body == b"x" * i
        assert "connection" not in headers
        assert session.open


def test_partial_request_sends_nothing_and_stays_open() -> None:
    session = HttpSession(app())
    assert drive(session, b"GET / HT") == b""
    assert session.open
    [(status, _, _)] = split_responses(drive(session, b"TP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 200


def test_connection_close_answers_then_closes() -> None:
    session = HttpSession(app())
    [(status, headers, _)] = split_responses(drive(session, get("/", "Connection: close")))
    assert status == 200
    assert headers["connection"] == "close"
    assert not session.open


def test_http10_closes_by_default_and_keeps_alive_when_asked() -> None:
    session = HttpSession(app())
    [(_, headers, _)] = split_responses(drive(session, get("/", version="HTTP/1.0")))
    assert headers["connection"] == "close"
    assert not session.open
    session = HttpSession(app())
    [(_, headers, _)] = split_responses(drive(session, get("/", "Connection: keep-alive", version="HTTP/1.0")))
    assert headers["connection"] == "keep-alive"
    assert session.open


def test_pipelined_requests_answered_in_order() -> None:
    session = HttpSession(app())
    out = drive(session, b"".join(get("/work?bytes=%d" % n) for n in (1, 2, 3)))
    assert [body for _, _, body in split_responses(out)] == [b"x", b"xx", b"xxx"]
    assert session.open


def test_pipelined_requests_are_run_one_at_a_time_as_pulled() -> None:
    counting = Counting(Work(bytes=5))
    session = HttpSession(counting)
    session.receive(b"".join(get("/work?bytes=%d" % n) for n in (1, 2, 3)))
    assert counting.started == []  # receiving runs nothing
    _head, body = session.next_response()  # type: ignore[misc]
    assert body == b"x" and counting.started == ["/work?bytes=1"]
    assert not session.parser.idle  # the other two wait as unparsed bytes
    assert session.next_response() is not None and session.next_response() is not None
    assert session.next_response() is None
    assert counting.started == ["/work?bytes=1", "/work?bytes=2", "/work?bytes=3"]


def test_large_body_is_not_copied_into_the_head() -> None:
    session = HttpSession(App(Work(bytes=1 << 20)))
    session.receive(get("/work"))
    head, body = session.next_response()  # type: ignore[misc]
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 1048576" in head
    assert len(body) == 1 << 20


def test_requests_pipelined_after_close_are_not_answered() -> None:
    session = HttpSession(app())
    out = drive(session, get("/work?bytes=1") + get("/work?bytes=2", "Connection: close") + get("/work?bytes=3"))
    assert [body for _, _, body in split_responses(out)] == [b"x", b"xx"]
    assert not session.open


def test_protocol_error_answers_and_closes() -> None:
    session = HttpSession(app())
    out = drive(session, get("/work?bytes=1") + b"GET / HTTP/9.9\r\n\r\n" + get("/"))
    responses = split_responses(out)
    assert [status for status, _, _ in responses] == [200, 505]
    assert responses[1][1]["connection"] == "close"
    assert not session.open


def test_garbage_answers_400_and_closes() -> None:
    session = HttpSession(app())
    [(status, headers, _)] = split_responses(drive(session, b"\x16\x03\x01\x00\xa5\x01\x00"))
    assert status == 400 and headers["connection"] == "close"
    assert not session.open


def test_missing_host_answers_400_and_closes() -> None:
    session = HttpSession(app())
    [(status, headers, body)] = split_responses(drive(session, b"GET / HTTP/1.1\r\n\r\n"))
    assert status == 400 and headers["connection"] == "close" and b"Host" in body
    assert not session.open


def test_app_errors_keep_the_connection() -> None:
    session = HttpSession(app())
    out = drive(session, get("/nope") + get("/work?bytes=oops") + get("/", "X: y").replace(b"GET", b"PUT"))
    assert [status for status, _, _ in split_responses(out)] == [404, 400, 405]
    assert session.open


def test_eof_closes() -> None:
    session = HttpSession(app())
    assert drive(session, b"") == b""
    assert not session.open


def test_answer_with_a_given_response_skips_the_app() -> None:
    session = HttpSession(app())
    session.receive(get("/nope"))
    request = session.next_event()
    assert isinstance(request, Request)
    head, body = session.answer(request, Response(200, b"given"))
    assert body == b"given" and head.startswith(b"HTTP/1.1 200 ")
    assert session.open


def test_peer_gone_stops_the_pipelined_requests_not_yet_started() -> None:
    counting = Counting(Work(bytes=5))
    session = HttpSession(counting)
    asked: List[int] = []

    def gone() -> bool:
        asked.append(1)
        return True

    out = drive(session, get("/work?bytes=1") + get("/work?bytes=2") + get("/work?bytes=3"), gone)
    # The first request of a read has just arrived: it runs; the next ones look first.
    assert [body for _, _, body in split_responses(out)] == [b"x"]
    assert counting.started == ["/work?bytes=1"]
    assert asked and not session.open


def test_peer_gone_interrupts_a_long_sleep_and_answers_nothing() -> None:
    checks: List[int] = []

    def gone() -> bool:
        checks.append(1)
        return len(checks) >= 2  # the client leaves while the sleep runs

    session = HttpSession(app())
    session.receive(get("/work?sleep_ms=%d" % MAX_SLEEP_MS))
    assert session.next_response(gone) is None  # a full sleep would have answered, a minute later
    assert len(checks) == 2 and not session.open


def test_peer_gone_interrupts_long_cpu_work() -> None:
    checks: List[int] = []

    def gone() -> bool:
        checks.append(1)
        return True

    session = HttpSession(app())
    session.receive(get("/work?cpu_us=%d" % MAX_CPU_US))
    assert session.next_response(gone) is None
    assert checks == [1] and not session.open


def test_first_head_is_due_from_the_accept() -> None:
    session = HttpSession(app(head_timeout_s=5.0))
    assert session.head_deadline is not None
    now = session.head_deadline - 5.0
    assert session.read_timeout(30.0, now) == pytest.approx(5.0)
    assert not session.head_overdue(now + 4.9) and session.head_overdue(now + 5.0)
    assert session.timed_out() == b""  # nothing was received: close without a word
    assert not session.open


def test_overdue_partial_head_gets_408() -> None:
    session = HttpSession(app(head_timeout_s=5.0))
    assert drive(session, b"GET / HTTP/1.1\r\nHo") == b""
    assert session.head_overdue(session.head_deadline + 0.1)  # type: ignore[operator]
    [(status, headers, _)] = split_responses(session.timed_out())
    assert status == 408 and headers["connection"] == "close"
    assert not session.open


def test_between_requests_the_idle_timeout_applies_then_the_next_head_has_its_own_deadline() -> None:
    session = HttpSession(app(head_timeout_s=5.0))
    drive(session, get("/"))
    assert session.head_deadline is None
    assert session.read_timeout(30.0) == 30.0 and not session.head_overdue()
    before = time.monotonic()
    assert drive(session, b"GET /sec") == b""
    assert session.head_deadline is not None and session.head_deadline >= before + 5.0
    assert session.read_timeout(30.0) <= 5.0


def test_a_pending_body_is_not_under_the_head_deadline() -> None:
    session = HttpSession(app(head_timeout_s=5.0))
    drive(session, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    assert session.head_deadline is None and session.open
