"""The CSV export round-trips against the results JSON, with csv.DictReader and pandas."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from harness.report import write_csv
from harness.report.csv_export import COLUMNS, LATENCY_KEYS

ROOT = Path(__file__).resolve().parent.parent
ALL_DEFAULT = ROOT / "tests" / "fixtures" / "all-default.json"  # a schema-1 run (the first reference run)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SWEEP = FIXTURES / "report-sweep.json"
REPEAT = FIXTURES / "report-repeat.json"
OUTCOMES = ("ok", "hang", "refused", "reset", "closed", "malformed", "http_error")


def _optional(text: str) -> float | None:
    return None if text == "" else float(text)


@pytest.mark.parametrize("paths", [[ALL_DEFAULT], [SWEEP], [REPEAT], [ALL_DEFAULT, REPEAT]], ids=str)
def test_csv_round_trips_against_the_json(tmp_path: Path, paths: list[Path]) -> None:
    out = tmp_path / "report.csv"
    write_csv(paths, out)
    with open(out, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    items = [(path.stem, item) for path in paths for item in json.loads(path.read_text())["strategies"]]
    assert len(rows) == len(items)
    for row, (stem, item) in zip(rows, items, strict=True):
        assert row["file"] == stem
        assert row["strategy"] == item["strategy"]
        assert row["status"] == item["status"]
        assert (row["start_method"] or None) == item.get("start_method")
        assert row["workload"] == item.get("workload", "hello")
        assert int(row["repetition"]) == item.get("repetition", 0)
        level = item.get("level") or {}
        assert ({row["level_kind"]: float(row["level_value"])} if row["level_kind"] else {}) == level
        assert float(row["throughput_rps"]) == item["throughput_rps"]  # exact: floats written by repr
        assert float(row["hang_rate"]) == item["hang_rate"]
        assert {kind: int(row[kind]) for kind in OUTCOMES} == item["requests"]
        assert int(row["requests"]) == sum(item["requests"].values())
        for key in LATENCY_KEYS:
            assert _optional(row["%s_us" % key]) == (item["latency_us"][key] or None)
        assert row["client_bound"] == ("true" if item["client_bound"] else "false")
        assert _optional(row["server_peak_rss_mb"]) == item["server_peak_rss_mb"]
        assert (row["stuck"] or None) == item.get("stuck")
        assert (row["message"] or None) == item.get("message")


def test_text_with_commas_quotes_and_newlines_survives(tmp_path: Path) -> None:
    raw = json.loads(ALL_DEFAULT.read_text())
    raw["strategies"][0]["message"] = 'failed, said "no"\nsecond line'
    source = tmp_path / "odd.json"
    source.write_text(json.dumps(raw), encoding="utf-8")
    out = tmp_path / "odd.csv"
    write_csv([source], out)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0]["message"] == 'failed, said "no"\nsecond line'
    assert len(rows) == len(raw["strategies"])


@pytest.mark.slow  # importing pandas alone takes seconds
def test_pandas_reads_it_with_types(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    out = tmp_path / "report.csv"
    write_csv([REPEAT], out)
    frame = pandas.read_csv(out)
    raw = json.loads(REPEAT.read_text())["strategies"]
    assert list(frame.columns) == COLUMNS
    assert frame["throughput_rps"].tolist() == [item["throughput_rps"] for item in raw]
    assert frame["p99_us"].tolist() == [item["latency_us"]["p99"] for item in raw]
