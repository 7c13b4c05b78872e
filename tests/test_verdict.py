"""The verdict per workload: best by mean throughput among sound cases, ties by a significance
test, hung/failed/broken cases named and never ranked; and its reprint from a results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.results.stats import ONE_REPETITION, summarize
from harness.results.verdict import format_verdict, from_run, verdict, verdict_main


def _records(strategy: str, values: list[float], workload: str = "cpu", **extra: Any) -> list[dict[str, Any]]:
    records = []
    for repetition, rps in enumerate(values):
        record: dict[str, Any] = {
            "strategy": strategy,
            "status": "completed",
            "python": "3.11.7",
            "throughput_rps": rps,
            "latency_us": {"p50": 1000, "p99": 5000},
            "requests": {"ok": int(rps), "hang": 0},
            "workload": workload,
            "level": {},
            "repetition": repetition,
        }
        record.update(extra)
        records.append(record)
    return records


def _sample_run() -> list[dict[str, Any]]:
    records = (
        _records("scm-rights", [2000.0, 2030.0, 1985.0])
        + _records("gevent", [1990.0, 2010.0, 1995.0])  # within noise of the best
        + _records("threads", [1000.0, 1020.0, 990.0])
        + _records("pool-fromfd", [9000.0, 9100.0, 9050.0], broken="the fd number means nothing in the worker")
        + _records("asyncio-executor", [5000.0, 5100.0, 5050.0])
    )
    records[-1]["requests"] = {"ok": 5050, "hang": 1}  # one hang in one repetition: a finding
    records += _records("pool-socket", [3000.0, 0.0, 3100.0])
    records[-2]["status"] = "crashed"
    return records


def test_best_ties_runner_up_and_exclusions() -> None:
    records = _sample_run()
    broken = {"pool-fromfd": "the fd number means nothing in the worker", "threads": False}
    (entry,) = verdict(summarize(records), broken)["workloads"]
    assert set(entry) == {
        "workload",
        "level",
        "best",
        "tied",
        "runner_up",
        "ratio_to_runner_up",
        "significance",
        "excluded",
    }
    assert (entry["workload"], entry["level"], entry["best"]) == ("cpu", {}, "scm-rights")
    assert entry["tied"] == ["gevent"]
    assert entry["runner_up"] == "gevent"
    assert entry["ratio_to_runner_up"] == pytest.approx(2005.0 / 1998.333333333, rel=1e-9)
    assert entry["significance"].startswith("no significant difference from gevent (Welch's t-test, p = ")
    excluded = {x["case"]: x for x in entry["excluded"]}
    assert {case: x["status"] for case, x in excluded.items()} == {
        "pool-fromfd": "broken",
        "asyncio-executor": "hung",
        "pool-socket": "crashed",
    }
    assert excluded["asyncio-executor"]["why"] == "1 hang(s) over 3 repetition(s)"
    assert excluded["pool-socket"]["why"] == "crashed in 1 of 3 repetition(s)"
    assert excluded["pool-fromfd"]["why"] == "broken on purpose: the fd number means nothing in the worker"


def test_a_clear_winner_is_significant() -> None:
    records = _records("scm-rights", [2000.0, 2030.0, 1985.0]) + _records("threads", [1000.0, 1020.0, 990.0])
    (entry,) = verdict(summarize(records))["workloads"]
    assert (entry["best"], entry["tied"], entry["runner_up"]) == ("scm-rights", [], "threads")
    assert entry["significance"].startswith("significant: faster than threads (Welch's t-test, p < 0.001, n = 3 + 3")


def test_one_repetition_ranks_but_claims_no_significance() -> None:
    records = _records("gevent", [1500.0], workload="io") + _records("threads", [1400.0], workload="io")
    (entry,) = verdict(summarize(records))["workloads"]
    assert (entry["best"], entry["runner_up"], entry["tied"]) == ("gevent", "threads", [])
    assert entry["significance"] == ONE_REPETITION


def test_each_workload_has_its_own_verdict() -> None:
    records = (
        _records("scm-rights", [2000.0, 2100.0], workload="cpu")
        + _records("threads", [1000.0, 1050.0], workload="cpu")
        + _records("scm-rights", [900.0, 950.0], workload="io")
        + _records("threads", [5000.0, 5100.0], workload="io")
    )
    entries = verdict(summarize(records))["workloads"]
    assert [(e["workload"], e["best"]) for e in entries] == [("cpu", "scm-rights"), ("io", "threads")]


def test_nothing_sound_means_no_best() -> None:
    records = _records("pool-fromfd", [0.0, 0.0], requests={"ok": 0, "hang": 0}, status="no-response")
    records += _records("only", [0.0, 0.0], requests={"ok": 0, "hang": 0})
    (entry,) = verdict(summarize(records))["workloads"]
    assert (entry["best"], entry["runner_up"], entry["ratio_to_runner_up"]) == (None, None, None)
    assert [(x["case"], x["status"]) for x in entry["excluded"]] == [
        ("pool-fromfd", "no-response"),
        ("only", "no-response"),
    ]
    assert entry["excluded"][1]["why"] == "not one complete response"


def test_format_verdict_is_a_table_naming_the_unranked() -> None:
    summaries = summarize(_sample_run())
    text = format_verdict(verdict(summaries, {"pool-fromfd": True}), summaries)
    header, _rule, row, *notes = text.splitlines()
    assert header.split()[:2] == ["workload", "best"]
    assert row.startswith("cpu ") and "scm-rights" in row
    assert "2005 (" in row  # the best's mean and its 95 % interval
    note = " ".join(line.strip() for line in notes)
    assert note.startswith("cpu: significant") or note.startswith("cpu: no significant")
    assert "asyncio-executor (hung)" in note and "pool-socket (crashed)" in note and "pool-fromfd (broken)" in note
    assert max(len(line) for line in text.splitlines()) <= 120


def test_verdict_main_reads_a_schema_1_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Schema 1: no summaries, no workload/level/repetition; the broken flag comes from the records.
    strategies = [
        {"strategy": "threads", "status": "completed", "throughput_rps": 1500.0, "python": "3.11.7"},
        {"strategy": "gevent", "status": "completed", "throughput_rps": 1200.0, "python": "3.11.7"},
        {"strategy": "pool-fromfd", "status": "completed", "throughput_rps": 0.0, "broken": "fd", "python": "3.11.7"},
    ]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": 1, "strategies": strategies}), encoding="utf-8")
    assert verdict_main(str(path)) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "threads" in out and "pool-fromfd (no-response)" in out
    result, summaries = from_run(json.loads(path.read_text()))
    assert result["workloads"][0]["best"] == "threads" and len(summaries) == 3


def test_verdict_main_prefers_the_stored_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stored: dict[str, Any] = {
        "workloads": [{"workload": "io", "level": {}, "best": "gevent", "tied": [], "runner_up": None}]
    }
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"schema_version": 2, "strategies": [], "summaries": [], "verdict": stored}))
    assert verdict_main(str(path)) == 0
    assert "gevent" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "cannot read results file"), ("[1, 2]", "not a hangbench results file")],
)
def test_verdict_main_bad_files_are_one_sentence(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message) as caught:
        verdict_main(str(path))
    assert "\n" not in str(caught.value)
