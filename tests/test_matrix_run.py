"""A tiny real run through the whole matrix: repetitions give summaries and a verdict, a rate
sweep gives open-loop records and a knee, and the file says so (slow: starts real servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.slow
def test_repeated_run_writes_summaries_and_a_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    argv = ["--strategy", "threads,gevent", "--repeat", "2", "-d", "0.5", "-w", "0", "-c", "2", "-q", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["schema_version"] == 2
    assert [(r["strategy"], r["repetition"]) for r in data["strategies"]] == [
        ("threads", 0),
        ("gevent", 0),
        ("threads", 1),
        ("gevent", 1),
    ]
    summaries = {s["case"]: s for s in data["summaries"]}
    threads = [r["throughput_rps"] for r in data["strategies"] if r["strategy"] == "threads"]
    assert summaries["threads"]["throughput_rps"]["values"] == threads and summaries["threads"]["n"] == 2
    (entry,) = data["verdict"]["workloads"]
    assert entry["best"] in ("threads", "gevent") and entry["workload"] == "hello"
    assert "verdict" in printed and "threads #2" in printed
    assert data["config"]["repeat"] == 2 and "hello" in data["config"]["workloads"]
    assert main(["verdict", str(out)]) == 0
    assert entry["best"] in capsys.readouterr().out


@pytest.mark.slow
def test_rate_sweep_records_open_loop_levels_and_a_knee(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    argv = ["--strategy", "threads", "--sweep", "rate=50,100", "-d", "1", "-w", "0", "-q", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    records = data["strategies"]
    assert [r["level"] for r in records] == [{"rate": 50.0}, {"rate": 100.0}]
    assert all(r["load_model"] == "open" and r["intended_rate_rps"] == r["level"]["rate"] for r in records)
    assert all(r["achieved_rate_rps"] and r["intervals"] and r["service_latency_us"] for r in records)
    (knee,) = data["knees"]
    assert knee["case"] == "threads" and knee["sweep"] == "rate" and knee["slo_p99_ms"] == 100.0
    assert knee["knee"] == 100.0, knee  # 100 req/s of GET / is far below what threads sustains
    assert "knee threads: 100 req/s" in printed
