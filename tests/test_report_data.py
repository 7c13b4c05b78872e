"""The report's series equal the results JSON: spectrum, time series, sweeps, repetitions, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.load.metrics import LatencyHistogram
from harness.report import data
from harness.report.compare import deltas

ROOT = Path(__file__).resolve().parent.parent
ALL_DEFAULT = ROOT / "tests" / "fixtures" / "all-default.json"  # a schema-1 run (the first reference run)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SWEEP = FIXTURES / "report-sweep.json"
REPEAT = FIXTURES / "report-repeat.json"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [ALL_DEFAULT, SWEEP, REPEAT], ids=lambda p: p.stem)
def test_spectrum_percentiles_equal_the_records_percentiles(path: Path) -> None:
    raw = _json(path)["strategies"]
    checked = 0
    for item in raw:
        spec = data.spectrum(item["histogram"])
        if item["requests"]["ok"] == 0:
            assert spec is None  # nothing to draw for a case without an ok response
            continue
        assert spec is not None
        assert spec.total == item["requests"]["ok"]
        latency = item["latency_us"]
        for name, pct in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
            if data.spectrum_x(pct) <= spec.total:
                assert spec.at(pct) == latency[name], (item["strategy"], name)
        assert spec.values_us[-1] <= latency["max"]
        assert list(spec.values_us) == sorted(spec.values_us)  # a spectrum never goes down
        checked += 1
    assert checked >= 2


def test_percentile_grid_reaches_99_999_only_with_enough_samples() -> None:
    assert max(data.percentile_grid(10**7)) == pytest.approx(99.999)
    small = data.percentile_grid(500)
    assert 99.0 in small and 99.9 not in small
    assert data.spectrum_x(max(small)) == pytest.approx(500)


def test_merged_histogram_adds_repetitions_exactly() -> None:
    runs = data.load_runs([REPEAT])
    records = [r for r in runs[0].records if r.case == "threads"]
    merged = LatencyHistogram.decode(data.merged_histogram(records))
    assert merged.total_count == sum(r.requests["ok"] for r in records)


def test_time_series_equal_the_intervals() -> None:
    run = data.load_run(REPEAT)
    raw = _json(REPEAT)["strategies"]
    for record, item in zip(run.records, raw, strict=True):
        series = data.time_series(record)
        assert series is not None
        intervals = item["intervals"]
        assert list(series.t_s) == [i["t_s"] for i in intervals]
        assert list(series.ok_rps) == [float(i["counts"]["ok"]) for i in intervals]  # 1 s intervals
        assert list(series.p99_ms) == [i["p99_us"] / 1000.0 for i in intervals]
        for share, interval in zip(series.hang_pct, intervals, strict=True):
            total = sum(interval["counts"].values())
            assert share == pytest.approx(100.0 * interval["counts"]["hang"] / total)
        assert sum(i["counts"]["hang"] for i in intervals) == item["requests"]["hang"]


def test_time_series_absent_without_intervals() -> None:
    run = data.load_run(ALL_DEFAULT)
    assert all(data.time_series(record) is None for record in run.records)


def test_sweep_series_equal_the_records_and_knees() -> None:
    runs = data.load_runs([SWEEP])
    raw = _json(SWEEP)
    assert data.is_sweep(runs, "hello")
    series = {s.case: s for s in data.sweep_series(runs, "hello")}
    assert set(series) == {"threads", "pool-socket"}
    for knee in raw["knees"]:
        assert series[knee["case"]].knee == knee["knee"]
        assert series[knee["case"]].slo_p99_ms == knee["slo_p99_ms"]
    for item in raw["strategies"]:
        one = series[item["strategy"]]
        at = one.levels.index(float(item["level"]["concurrency"]))
        assert one.throughput[at].values == (item["throughput_rps"],)
        assert one.p99_ms[at].values == (item["latency_us"]["p99"] / 1000.0,)


def test_repetition_spread_equals_the_summaries() -> None:
    run = data.load_run(REPEAT)
    group = data.groups([run])[0]
    for summary in _json(REPEAT)["summaries"]:
        records = group.series()[(run.source, summary["case"])]
        spread = data.throughput_spread(records)
        assert list(spread.values) == summary["throughput_rps"]["values"]
        assert spread.mean == pytest.approx(summary["throughput_rps"]["mean"])
        assert spread.sd == pytest.approx(summary["throughput_rps"]["sd"])
        assert [v * 1000 for v in data.p99_spread_ms(records).values] == pytest.approx(summary["p99_us"]["values"])


def test_version_1_records_get_the_defaults() -> None:
    run = data.load_run(ALL_DEFAULT)
    assert run.schema_version == 1 and run.summaries == () and run.knees == () and run.verdict is None
    record = run.records[0]
    assert (record.workload, record.level, record.repetition, record.intervals) == ("hello", (), 0, [])
    assert [r.case for r in run.records][:2] == ["asyncio-executor", "gevent"]


def test_duplicate_cases_of_a_version_1_file_stay_apart() -> None:
    run = data.load_run(ROOT / "results" / "reference" / "gh101225-emulated-c8.json")
    cases = [r.case for r in run.records]
    assert len(set(cases)) == len(cases) == 6


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "cannot read results file"),
        ("[1, 2]", "is not a hangbench results file"),
        ('{"schema_version": 9, "strategies": []}', "schema version 9 is not supported"),
    ],
)
def test_unreadable_files_give_one_sentence(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(data.ReportError, match=words):
        data.load_runs([path])


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(data.ReportError, match="does not exist"):
        data.load_runs([tmp_path / "nope.json"])


def test_same_stem_in_two_folders_gets_two_labels(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / "all-default.json"
    copy.write_text(ALL_DEFAULT.read_text(encoding="utf-8"), encoding="utf-8")
    runs = data.load_runs([ALL_DEFAULT, copy])
    assert [run.source for run in runs] == ["1:all-default", "2:all-default"]
    assert {r.source for r in runs[1].records} == {"2:all-default"}


def test_deltas_compare_matching_cases_with_a_test_when_repeated(tmp_path: Path) -> None:
    raw = _json(REPEAT)
    for item in raw["strategies"]:
        if item["strategy"] == "threads":
            item["throughput_rps"] *= 2
    for summary in raw["summaries"]:
        if summary["case"] == "threads":
            summary["throughput_rps"]["values"] = [v * 2 for v in summary["throughput_rps"]["values"]]
    faster = tmp_path / "faster.json"
    faster.write_text(json.dumps(raw), encoding="utf-8")
    found = {d.case: d for d in deltas(data.load_runs([REPEAT, faster]))}
    assert set(found) == {"threads", "gevent", "pool-socket"}
    assert found["threads"].throughput_change == pytest.approx(1.0)
    assert found["threads"].significance.startswith("significant: faster")
    assert found["gevent"].throughput_change == 0.0
    single = {d.case: d for d in deltas(data.load_runs([ALL_DEFAULT, ALL_DEFAULT]))}
    assert "one repetition" in single["threads"].significance
