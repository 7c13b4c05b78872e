"""`compare` with repetitions (significance per case), sweeps and knees, workload and machine
checks, and version 1 files still read -- all on fixed records, no servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.results.analysis import analysed
from harness.results.compare import check_comparable, compare_runs
from harness.results.jsonio import read_run, write_run
from harness.results.records import RunRecord, StrategyRecord

ENV = {"cpu_model": "cpu A", "kernel": "6.1", "python": "3.11.7"}


def rec(strategy: str, rps: float, repetition: int = 0, **extra: Any) -> StrategyRecord:
    return StrategyRecord(
        strategy=strategy,
        status="completed",
        requests={"ok": int(rps), "hang": 0},
        throughput_rps=rps,
        latency_us={"p50": 1000, "p99": 4000},
        repetition=repetition,
        **extra,
    )


def run(records: Sequence[StrategyRecord], env: Dict[str, Any] = ENV, **config: Any) -> RunRecord:
    config = {"workloads": {"hello": "cpu 0 µs"}, "deadline_s": 2.0, **config}
    return analysed(RunRecord("20261130T000000Z", "x", dict(env), config, list(records)))


def repeated(values: Dict[str, List[float]]) -> RunRecord:
    return run([rec(name, v, i) for name, vs in values.items() for i, v in enumerate(vs)])


def line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [name])


def test_noise_is_no_significant_difference_and_a_slowdown_is_significant() -> None:
    baseline = repeated({"threads": [2000, 2100, 1950, 2050, 2020], "gevent": [1800, 1850, 1790, 1830, 1810]})
    same = repeated({"threads": [2010, 1990, 2080, 1970, 2040], "gevent": [1820, 1795, 1840, 1805, 1830]})
    slow = repeated({"threads": [500, 520, 480, 510, 490], "gevent": [1820, 1795, 1840, 1805, 1830]})
    text = compare_runs(baseline, same)
    assert "no significant difference (p = " in line_of(text, "threads") and "n = 5 + 5" in line_of(text, "threads")
    assert "no significant difference" in line_of(text, "gevent")
    text = compare_runs(baseline, slow)
    assert "significant: slower (p < 0.001, n = 5 + 5)" in line_of(text, "threads")
    assert "no significant difference" in line_of(text, "gevent")
    assert "2024 -> 500" in line_of(text, "threads")  # means over the repetitions


def test_with_one_repetition_no_significance_can_be_given() -> None:
    text = compare_runs(run([rec("threads", 1000)]), run([rec("threads", 3000)]))
    assert "no significance can be given with one repetition" in text
    assert "significant: faster" not in text


def test_compare_refuses_different_named_workloads_and_changed_parameters() -> None:
    a = run([rec("threads", 1)], workloads={"cpu": "cpu 1000 µs"})
    check_comparable(a, run([rec("threads", 1)], workloads={"cpu": "cpu 1000 µs", "io": "sleep 20 ms"}))
    with pytest.raises(UsageError, match="different workloads"):
        check_comparable(a, run([rec("threads", 1)], workloads={"io": "sleep 20 ms"}))
    with pytest.raises(UsageError, match="cpu: cpu 1000 µs in the baseline, cpu 2000 µs"):
        check_comparable(a, run([rec("threads", 1)], workloads={"cpu": "cpu 2000 µs"}))


def test_compare_warns_in_one_line_when_the_machine_differs() -> None:
    other = {"cpu_model": "cpu B", "kernel": "6.5", "python": "3.11.7"}
    text = compare_runs(run([rec("threads", 1)]), run([rec("threads", 1)], env=other))
    (warning,) = [line for line in text.splitlines() if line.startswith("warning:")]
    assert "different CPUs (cpu A vs cpu B)" in warning and "different kernels (6.1 vs 6.5)" in warning
    assert "Pythons" not in warning
    assert "warning" not in compare_runs(run([rec("threads", 1)]), run([rec("threads", 1)]))


def test_sweeps_compare_per_level_and_per_knee() -> None:
    def sweep(p99_at_2000: int) -> RunRecord:
        records = [
            rec("threads", r, level={"rate": r}, load_model="open", intended_rate_rps=r, achieved_rate_rps=r)
            for r in (1000.0, 2000.0)
        ]
        records[1] = StrategyRecord(**{**records[1].__dict__, "latency_us": {"p50": 1, "p99": p99_at_2000}})
        return run(records)

    text = compare_runs(sweep(4000), sweep(400_000))
    assert "threads rate=1000" in text and "threads rate=2000" in text
    assert "threads [hello] rate sweep: 2000 -> 1000" in text


def test_a_version_1_file_still_reads_for_compare_and_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = {
        "schema_version": 1,
        "created": "20261101T000000Z",
        "label": "old",
        "environment": ENV,
        "config": {"concurrency": 32, "read": "content-length"},
        "partial": False,
        "strategies": [
            {"strategy": "threads", "status": "completed", "throughput_rps": 1000.0, "requests": {"ok": 10}},
            {"strategy": "gevent", "status": "completed", "throughput_rps": 900.0, "requests": {"ok": 9}},
        ],
    }
    old = tmp_path / "old.json"
    old.write_text(json.dumps(v1), encoding="utf-8")
    record = read_run(str(old))
    assert record.schema_version == 1 and record.summaries == [] and record.verdict is None
    assert record.strategies[0].workload == "hello" and record.strategies[0].level == {}
    new = tmp_path / "new.json"
    write_run(run([rec("threads", 1100), rec("gevent", 950)]), new)
    assert main(["compare", str(old), str(new)]) == 0
    assert "1000 -> 1100" in capsys.readouterr().out
    assert main(["verdict", str(old)]) == 0
    out = capsys.readouterr().out
    assert "threads" in out and "no significance can be given with one repetition" in out


def test_summaries_and_verdict_trace_back_to_the_repetitions() -> None:
    result = repeated({"threads": [2000, 2100, 1950], "gevent": [1000, 1050, 990]})
    (threads, gevent) = result.summaries
    assert threads["throughput_rps"]["values"] == [2000, 2100, 1950] and threads["n"] == 3
    assert result.verdict is not None
    (entry,) = result.verdict["workloads"]
    assert entry["best"] == "threads" and entry["runner_up"] == "gevent" and entry["tied"] == []
    assert entry["ratio_to_runner_up"] == pytest.approx(
        threads["throughput_rps"]["mean"] / gevent["throughput_rps"]["mean"]
    )


def test_open_loop_runs_get_knees_not_a_throughput_verdict() -> None:
    records = [
        rec(name, rate, level={"rate": rate}, load_model="open", intended_rate_rps=rate, achieved_rate_rps=rate)
        for name in ("threads", "gevent")
        for rate in (100.0, 200.0)
    ]
    result = run(records)
    assert result.verdict is None  # every case that keeps up sends the rate: throughput ranks nothing
    assert [(k["case"], k["knee"]) for k in result.knees] == [("threads", 200.0), ("gevent", 200.0)]
    assert len(result.summaries) == 4
