"""What the app keeps between requests (small responses) changes no answer."""

from __future__ import annotations

import pytest

from harness.server import app as app_module
from harness.server.app import MAX_KEPT, MAX_KEPT_BODY, App, Work, make_body, ok_response
from harness.server.protocol import Request, Response


def test_the_kept_responses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "_responses", {})
    for size in range(MAX_KEPT * 3):
        assert ok_response(size) == Response(200, make_body(size))
        assert len(app_module._responses) <= MAX_KEPT


def test_small_responses_are_shared_and_large_ones_are_not() -> None:
    assert ok_response(64) is ok_response(64)
    large = MAX_KEPT_BODY + 1
    assert ok_response(large) is not ok_response(large)
    assert ok_response(large) == Response(200, b"x" * large)


def test_answers_through_the_kept_tables_equal_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "_responses", {})  # the first answer is made afresh, the second kept
    app = App(Work(bytes=7))
    for target in ["/", "/?x=1", "/work", "/work?bytes=3", "/work?bytes=x", "/work?sleep_ms=-1", "/nope"]:
        request = Request("GET", target, "HTTP/1.1", (("host", "h"),), True)
        first = app(request)
        assert app(request) == first, target
    assert app(Request("GET", "/work", "HTTP/1.1", (), True)).body == b"x" * 7
