"""Workload: the request it sends, the checks it makes, how it splits over processes."""

from __future__ import annotations

import math

import pytest

from harness.load import Workload
from harness.load.schedule import MEASURED, STOP, WARM, Schedule


def make(**changes: object) -> Workload:
    values: dict = {"host": "127.0.0.1", "port": 8080}
    values.update(changes)
    return Workload(**values)


def test_defaults_pass_the_check() -> None:
    workload = make()
    assert workload.check() is workload


def test_target_carries_the_work() -> None:
    assert make(cpu_us=200, sleep_ms=5.0, bytes=1024).target() == "/work?cpu_us=200&sleep_ms=5&bytes=1024"
    assert make(sleep_ms=0.25).target() == "/work?cpu_us=0&sleep_ms=0.25&bytes=64"


@pytest.mark.parametrize("connection", ["close", "keep-alive"])
def test_request_bytes_are_one_complete_get(connection: str) -> None:
    data = make(connection=connection).request_bytes()
    assert data.startswith(b"GET /work?cpu_us=0&sleep_ms=0&bytes=64 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:8080\r\n" in data
    assert b"\r\nConnection: %s\r\n" % connection.encode() in data
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"host": ""}, "host"),
        ({"engine": "gevent"}, "engine"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 10**6}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"duration_s": math.nan}, "duration_s"),
        ({"duration_s": None}, "duration_s"),
        ({"requests": 10}, "not both"),
        ({"duration_s": None, "requests": 0}, "requests"),
        ({"warmup_s": -0.5}, "warmup_s"),
        ({"warmup_s": math.inf}, "warmup_s"),
        ({"connection": "upgrade"}, "connection"),
        ({"read": "lines"}, "read"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"deadline_s": 61}, "deadline_s"),
        ({"cpu_us": -1}, "cpu_us"),
        ({"sleep_ms": -1}, "sleep_ms"),
        ({"sleep_ms": 1e9}, "sleep_ms"),
        ({"bytes": -1}, "bytes"),
        ({"bytes": 2**40}, "bytes"),
        ({"client_procs": 0}, "client_procs"),
        ({"client_procs": 2, "engine": "threads"}, "asyncio"),
        ({"client_procs": 4, "concurrency": 2}, "at least client_procs"),
        ({"client_procs": 4, "duration_s": None, "requests": 3}, "at least client_procs"),
    ],
)
def test_check_rejects_impossible_numbers_in_one_sentence(changes: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        make(**changes).check()
    message = str(info.value)
    assert "\n" not in message and message.count(". ") == 0


def test_requests_mode_passes_with_duration_none() -> None:
    make(duration_s=None, requests=100).check()


def test_share_splits_concurrency_and_requests_exactly() -> None:
    workload = make(concurrency=10, client_procs=3, duration_s=None, requests=101)
    shares = workload.share(3)
    assert [s.concurrency for s in shares] == [4, 3, 3]
    assert sum(s.requests or 0 for s in shares) == 101
    assert all(s.client_procs == 1 and s.check() for s in shares)


def test_schedule_attributes_requests_to_the_phase_they_start_in() -> None:
    schedule = Schedule(make(warmup_s=1.0, duration_s=2.0), start=100.0)
    assert schedule.admit(100.5) == WARM
    assert schedule.admit(101.0) == MEASURED
    assert schedule.admit(102.99) == MEASURED
    assert schedule.admit(103.0) == STOP
    assert schedule.elapsed(last_end=104.5) == pytest.approx(2.0)


def test_schedule_counts_tickets_in_requests_mode() -> None:
    schedule = Schedule(make(warmup_s=0.0, duration_s=None, requests=2), start=0.0)
    assert [schedule.admit(1.0) for _ in range(3)] == [MEASURED, MEASURED, STOP]
    assert schedule.issuing_over(1.0)
    assert schedule.elapsed(last_end=1.5) == pytest.approx(1.5)


def test_schedule_stop_cuts_the_window() -> None:
    schedule = Schedule(make(warmup_s=1.0, duration_s=10.0), start=0.0)
    schedule.stop(3.0)
    assert schedule.admit(3.5) == STOP
    assert schedule.elapsed(last_end=3.2) == pytest.approx(2.0)
