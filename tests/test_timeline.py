"""Per-request timelines (harness.load.timeline): the bounded book, merging across client
processes, and both engines' milestones against scripted servers."""

from __future__ import annotations

from typing import List

import pytest
from test_load_engines import ScriptedServer, workload

from harness.load import run_load
from harness.load.metrics import LatencyHistogram, LoadResult, merge
from harness.load.schedule import Progress
from harness.load.timeline import TimelineBook, merge_books


def test_book_keeps_the_first_n_and_counts_every_hang_by_last_milestone() -> None:
    book = TimelineBook(limit=2)
    marks = [("connect_start", 10.0), ("connected", 10.001), ("request_written", 10.002)]
    for _ in range(3):
        book.add("hang", 10.0, marks, 40312, hung=True)
    book.add("reset", 10.0, [*marks, ("rst", 10.003)], 40313, hung=False)
    assert len(book.timelines) == 2 and book.seen == 4
    assert book.hang_milestones == {"request sent, no byte back": 3}
    first = book.timelines[0]
    assert first == {
        "outcome": "hang",
        "port": 40312,
        "last": "request sent, no byte back",
        "milestones": {"connect_start": 0, "connected": 1000, "request_written": 2000},
    }


def test_merge_keeps_every_process_timelines_and_adds_the_counts() -> None:
    timelines, counts = merge_books([([{"a": 1}], {"x": 1}), ([{"b": 2}, {"c": 3}], {"x": 2, "y": 1})], 2)
    assert timelines == [{"a": 1}, {"b": 2}]
    assert counts == {"x": 3, "y": 1}


def test_load_results_merge_their_timelines() -> None:
    base = LoadResult.from_dict(LoadResult.build({}, _empty(), 1.0, 0.1, engine="asyncio").to_dict())
    one = LoadResult(**{**base.__dict__, "timelines": [{"port": 1}], "hang_milestones": {"x": 1}})
    two = LoadResult(**{**base.__dict__, "timelines": [{"port": 2}], "hang_milestones": {"x": 2}})
    merged = merge([one, two])
    assert merged.timelines == [{"port": 1}, {"port": 2}] and merged.hang_milestones == {"x": 3}


@pytest.mark.parametrize("engine", ["threads", "asyncio"])
def test_engine_records_where_a_hung_request_stopped_and_the_oldest_in_flight(engine: str) -> None:
    seen: List[Progress] = []
    with ScriptedServer("silent") as server:
        result = run_load(
            workload(server.port, engine, concurrency=2, duration_s=1.2, deadline_s=0.3, timelines=3), seen.append
        )
    assert result.counts["hang"] > 3
    assert len(result.timelines) == 3  # the bound
    assert result.hang_milestones == {"request sent, no byte back": result.counts["hang"]}
    first = result.timelines[0]
    assert first["outcome"] == "hang" and isinstance(first["port"], int) and first["port"] > 0
    assert list(first["milestones"]) == ["connect_start", "connected", "request_written"]
    assert any(p.oldest_in_flight_s is not None and 0 <= p.oldest_in_flight_s < 1.0 for p in seen)


@pytest.mark.parametrize("engine", ["threads", "asyncio"])
def test_engine_marks_a_full_response_that_never_closes(engine: str) -> None:
    with ScriptedServer("keep-open") as server:
        result = run_load(workload(server.port, engine, concurrency=1, duration_s=0.6, deadline_s=0.2, read="eof"))
    assert result.counts["hang"] > 0
    assert result.hang_milestones == {"full response, no FIN": result.counts["hang"]}
    assert "first_byte" in result.timelines[0]["milestones"]


def _empty() -> LatencyHistogram:
    return LatencyHistogram()


def test_the_report_shows_the_kept_timelines() -> None:
    from harness.report.forensics import forensics_html

    item = {"outcome": "hang", "port": 40312, "last": "full response, no FIN", "milestones": {"first_byte": 2655}}
    page = forensics_html(None, None, [item])
    assert "client port 40312, last: full response, no FIN: first_byte 2.7 ms" in page
    assert forensics_html(None, None, []) == ""
