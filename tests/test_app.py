"""The common handler: routes, the work a query asks for, its bounds, and the CPU it burns.

No timing upper bounds anywhere: the machine is shared, so only "at least this much" is asserted.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import List

import pytest

from harness.server import app as app_module
from harness.server.app import (
    CANCEL_CHECK_CPU_NS,
    CANCEL_CHECK_S,
    INDEX_BODY,
    MAX_BYTES,
    MAX_CPU_US,
    MAX_SLEEP_MS,
    App,
    BadLimits,
    BadWork,
    ClientGone,
    Limits,
    Work,
    burn_cpu,
    handle,
    make_body,
)
from harness.server.app import sleep as app_sleep
from harness.server.protocol import Request, Response


def req(target: str, method: str = "GET") -> Request:
    return Request(method, target, "HTTP/1.1", (), True)


def test_index() -> None:
    response = App()(req("/"))
    assert response.status == 200
    assert response.body == INDEX_BODY


def test_index_ignores_query() -> None:
    assert App()(req("/?cpu_us=x")).body == INDEX_BODY


def test_work_uses_server_defaults_without_query() -> None:
    assert App()(req("/work")).body == make_body(64)
    assert App(Work(bytes=7))(req("/work")).body == b"x" * 7


def test_query_overrides_defaults() -> None:
    app = App(Work(cpu_us=0, sleep_ms=0.0, bytes=7))
    assert len(app(req("/work?bytes=12345")).body) == 12345
    assert app(req("/work?bytes=0")).body == b""


def test_parse_work_defaults_and_overrides() -> None:
    app = App(Work(cpu_us=5, sleep_ms=1.5, bytes=9))
    assert app.parse_work("") == Work(5, 1.5, 9)
    assert app.parse_work("cpu_us=200&sleep_ms=2.5&bytes=1024") == Work(200, 2.5, 1024)
    assert app.parse_work("sleep_ms=0") == Work(5, 0.0, 9)
    assert app.parse_work("bytes=") == Work(5, 1.5, 9)  # blank means "not given"
    assert app.parse_work("unknown=1") == Work(5, 1.5, 9)


def test_head_and_post_are_served() -> None:
    assert App()(req("/work?bytes=3", "HEAD")).status == 200
    assert App()(req("/work?bytes=3", "POST")).body == b"xxx"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "get"])
def test_other_methods_are_405_with_allow(method: str) -> None:
    response = App()(req("/work", method))
    assert response.status == 405
    assert ("Allow", "GET, HEAD, POST") in response.extra_headers


@pytest.mark.parametrize("target", ["/nope", "/work/", "/worker", "//work", "/index.html"])
def test_unknown_paths_are_404(target: str) -> None:
    assert App()(req(target)).status == 404


def test_absolute_form_target_routes_by_path() -> None:
    assert App()(req("http://example/work?bytes=4")).body == b"xxxx"


@pytest.mark.parametrize(
    "query",
    [
        "cpu_us=abc",
        "cpu_us=1.5",
        "cpu_us=1e3",
        "sleep_ms=fast",
        "bytes=ten",
        "bytes=1.0",
        "bytes=0x10",
        "sleep_ms=nan",
        "sleep_ms=inf",
    ],
)
def test_bad_numbers_are_400(query: str) -> None:
    response = App()(req("/work?" + query))
    assert response.status == 400
    assert response.body.endswith(b"\n")


@pytest.mark.parametrize(
    "query",
    [
        "cpu_us=-1",
        "cpu_us=%d" % (MAX_CPU_US + 1),
        "sleep_ms=-0.5",
        "sleep_ms=%g" % (MAX_SLEEP_MS + 1),
        "bytes=-1",
        "bytes=%d" % (MAX_BYTES + 1),
    ],
)
def test_out_of_bounds_is_400_and_says_the_bound(query: str) -> None:
    response = App()(req("/work?" + query))
    assert response.status == 400
    assert b"between 0 and" in response.body


def test_bounds_themselves_are_accepted() -> None:
    assert Work(cpu_us=MAX_CPU_US, sleep_ms=MAX_SLEEP_MS, bytes=MAX_BYTES).validated()
    assert Work(cpu_us=0, sleep_ms=0.0, bytes=0).validated()
    with pytest.raises(BadWork):
        Work(bytes=MAX_BYTES + 1).validated()


def test_make_body_sizes() -> None:
    for size in (0, 1, 4095, 4096, 4097, 10_000):
        body = make_body(size)
        assert len(body) == size
        assert set(body) <= {ord("x")}


def test_burn_cpu_burns_at_least_the_cpu_time_asked() -> None:
    before = time.thread_time()
    burn_cpu(20_000)
    assert time.thread_time() - before >= 0.020


def test_burn_cpu_zero_or_negative_returns_without_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: List[int] = []

    def clock() -> int:
        reads.append(1)
        return 0  # a clock that never advances: any spin would be caught by the timeout

    monkeypatch.setattr(app_module.time, "thread_time_ns", clock)
    burn_cpu(0)
    burn_cpu(-5)
    assert reads == []  # returned before even reading the CPU clock


# --------------------------------------------------------------------------- cancellation


def test_short_work_never_asks_whether_to_stop() -> None:
    def cancelled() -> bool:
        raise AssertionError("asked")

    response = App()(req("/work?cpu_us=1000&sleep_ms=%g&bytes=3" % (CANCEL_CHECK_S * 1000)), cancelled)
    assert response.body == b"xxx"


def test_long_sleep_stops_when_the_client_is_gone() -> None:
    asked: List[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(ClientGone):
        app_sleep(MAX_SLEEP_MS / 1000.0, cancelled)
    assert len(asked) == 3  # one look per slice, stopped at the third


def test_long_sleep_runs_to_the_end_while_the_client_stays() -> None:
    asked: List[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return False

    before = time.monotonic()
    app_sleep(3 * CANCEL_CHECK_S, cancelled)
    assert time.monotonic() - before >= 3 * CANCEL_CHECK_S
    assert 2 <= len(asked) <= 3  # looked between slices, never after the end


def test_long_cpu_burn_stops_when_the_client_is_gone() -> None:
    asked: List[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return True

    before = time.thread_time()
    with pytest.raises(ClientGone):
        burn_cpu(MAX_CPU_US, cancelled)
    assert asked == [1]
    assert time.thread_time() - before >= CANCEL_CHECK_CPU_NS / 1e9  # one slice burnt first


def test_long_cpu_burn_burns_it_all_while_the_client_stays() -> None:
    before = time.thread_time()
    burn_cpu(2 * CANCEL_CHECK_CPU_NS // 1000, lambda: False)
    assert time.thread_time() - before >= 2 * CANCEL_CHECK_CPU_NS / 1e9


def test_handle_passes_client_gone_through() -> None:
    with pytest.raises(ClientGone):
        handle(App(), req("/work?sleep_ms=%d" % MAX_SLEEP_MS), lambda: True)


def test_subclass_overriding_perform_alone_still_works() -> None:
    @dataclass(frozen=True)
    class Planner(App):
        @staticmethod
        def perform(work: Work) -> Response:  # type: ignore[override]
            return Response(200, b"planned %d" % work.bytes)

    assert handle(Planner(), req("/work?bytes=9")).body == b"planned 9"


# --------------------------------------------------------------------------- limits


def test_limits_defaults_and_bounds() -> None:
    limits = App().limits
    assert limits == Limits(head_timeout_s=10.0, max_connections=1000)
    assert limits.validated() is limits
    assert Limits(head_timeout_s=0.001, max_connections=1).validated()


@pytest.mark.parametrize(
    "limits",
    [
        Limits(head_timeout_s=0),
        Limits(head_timeout_s=-1),
        Limits(head_timeout_s=float("inf")),
        Limits(head_timeout_s=float("nan")),
        Limits(max_connections=0),
        Limits(max_connections=-5),
    ],
    ids=["zero", "negative", "inf", "nan", "no-connections", "negative-connections"],
)
def test_bad_limits_are_refused_with_a_value_error(limits: Limits) -> None:
    with pytest.raises(BadLimits) as raised:
        limits.validated()
    assert isinstance(raised.value, ValueError)  # what the server's command line turns into exit 2


def test_work_request_burns_cpu_and_sleeps() -> None:
    cpu_before, wall_before = time.thread_time(), time.monotonic()
    response = App()(req("/work?cpu_us=10000&sleep_ms=20&bytes=1"))
    assert response.status == 200
    assert time.thread_time() - cpu_before >= 0.010
    assert time.monotonic() - wall_before >= 0.010 + 0.020


def test_handle_turns_an_exception_into_500() -> None:
    class Broken(App):
        def __call__(self, request: Request):  # type: ignore[override]
            raise RuntimeError("boom")

    response = handle(Broken(), req("/"))
    assert response.status == 500
    assert b"boom" in response.body


def test_app_pickles() -> None:
    app = App(Work(cpu_us=1, sleep_ms=2.0, bytes=3), Limits(head_timeout_s=1.5, max_connections=7))
    assert pickle.loads(pickle.dumps(app)) == app
