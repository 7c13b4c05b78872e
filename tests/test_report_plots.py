"""What the figures draw equals the results JSON: the plot cannot drift from the numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

import numpy
from matplotlib.collections import PathCollection

from harness.report import data, plots

ROOT = Path(__file__).resolve().parent.parent
ALL_DEFAULT = ROOT / "tests" / "fixtures" / "all-default.json"  # a schema-1 run (the first reference run)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SWEEP = FIXTURES / "report-sweep.json"
REPEAT = FIXTURES / "report-repeat.json"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_spectrum_plot_passes_through_each_records_percentiles() -> None:
    runs = data.load_runs([ALL_DEFAULT])
    group = data.groups(runs)[0]
    figure = plots.spectrum_figure(group, plots.Styles(runs))
    lines = _lines(figure.axes[0])
    drawn = 0
    for item in _json(ALL_DEFAULT)["strategies"]:
        if item["requests"]["ok"] == 0:
            assert item["strategy"] not in lines
            continue
        xs, ys = (list(v) for v in lines[item["strategy"]].get_data())
        for name, pct in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
            at = xs.index(pytest.approx(data.spectrum_x(pct)))
            assert ys[at] == item["latency_us"][name] / 1000.0
        assert ys[-1] <= item["latency_us"]["max"] / 1000.0
        drawn += 1
    assert drawn == 5  # every case with ok responses; pool-fromfd had none


def test_spectrum_axis_is_the_hdrhistogram_percentile_axis() -> None:
    runs = data.load_runs([ALL_DEFAULT])
    ax = plots.spectrum_figure(data.groups(runs)[0], plots.Styles(runs)).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "percentile"
    assert [t.get_text() for t in ax.get_xticklabels()] == [label for _, label in plots.SPECTRUM_TICKS]
    assert ax.get_xlim() == (1.0, 1e5)


def test_time_series_plot_draws_the_intervals() -> None:
    runs = data.load_runs([REPEAT])
    figure = plots.timeseries_figure(data.groups(runs)[0], plots.Styles(runs))
    ok_axis, p99_axis, hang_axis = figure.axes[:3]
    raw = _json(REPEAT)["strategies"]
    firsts = {item["strategy"]: item for item in reversed(raw) if item["repetition"] == 0}
    for case, item in firsts.items():
        line = _lines(ok_axis)[case]
        assert list(line.get_xdata()) == [i["t_s"] for i in item["intervals"]]
        assert list(line.get_ydata()) == [float(i["counts"]["ok"]) for i in item["intervals"]]
    # Every repetition is drawn: as many lines per panel as records with intervals.
    assert len(ok_axis.get_lines()) == len(p99_axis.get_lines()) == len(hang_axis.get_lines()) == len(raw)
    drawn_p99 = sorted(tuple(line.get_ydata()) for line in p99_axis.get_lines())
    assert drawn_p99 == sorted(tuple(i["p99_us"] / 1000.0 for i in item["intervals"]) for item in raw)
    assert max(max(line.get_ydata()) for line in hang_axis.get_lines()) > 0  # the hung repetition shows


def test_sweep_plot_draws_each_level_and_marks_the_knee() -> None:
    runs = data.load_runs([SWEEP])
    raw = _json(SWEEP)
    figure = plots.sweep_figure(data.sweep_series(runs, "hello"), "concurrency", plots.Styles(runs))
    left, right = figure.axes[:2]
    for container in left.containers:
        case = container.get_label()
        xs, ys = container.lines[0].get_data()
        expected = sorted(
            (float(i["level"]["concurrency"]), i["throughput_rps"]) for i in raw["strategies"] if i["strategy"] == case
        )
        assert list(zip(xs, ys, strict=True)) == expected
    p99_drawn = sorted(tuple(c.lines[0].get_ydata()) for c in right.containers)
    p99_json = sorted(
        tuple(i["latency_us"]["p99"] / 1000.0 for i in raw["strategies"] if i["strategy"] == case)
        for case in ("threads", "pool-socket")
    )
    assert p99_drawn == p99_json
    verticals = {line.get_xdata()[0] for line in right.get_lines() if len(set(line.get_xdata())) == 1}
    assert verticals == {knee["knee"] for knee in raw["knees"]}
    assert any(list(line.get_ydata()) == [50.0, 50.0] for line in right.get_lines())  # the SLO line


def test_spread_plot_draws_every_repetition() -> None:
    runs = data.load_runs([REPEAT])
    figure = plots.spread_figure(data.groups(runs)[0], plots.Styles(runs))
    throughput_axis = figure.axes[0]
    points = [c for c in throughput_axis.collections if isinstance(c, PathCollection)]  # not the error bars
    drawn = [sorted(numpy.asarray(c.get_offsets())[:, 1].tolist()) for c in points]
    expected = [sorted(s["throughput_rps"]["values"]) for s in _json(REPEAT)["summaries"]]
    assert sorted(drawn) == sorted(expected)


def test_plan_lists_the_figures_each_kind_of_run_needs() -> None:
    sections = {
        path.stem: sorted(spec.section for spec in plots.plan(data.load_runs([path])))
        for path in (ALL_DEFAULT, SWEEP, REPEAT)
    }
    assert sections["all-default"] == ["spectrum"]
    assert sections["report-sweep"] == ["spectrum"] * 2 + ["sweep"] + ["timeseries"] * 5
    assert sections["report-repeat"] == ["spectrum", "spread", "timeseries"]
    slugs = [spec.slug for spec in plots.plan(data.load_runs([SWEEP]))]
    assert len(set(slugs)) == len(slugs)


@pytest.mark.slow
def test_svg_ids_are_unique_per_figure() -> None:
    runs = data.load_runs([ALL_DEFAULT])
    figure = plots.spectrum_figure(data.groups(runs)[0], plots.Styles(runs))
    one, two = plots.to_svg(figure, "f1"), plots.to_svg(figure, "f2")
    assert one.startswith("<svg") and 'id="f1-' in one and 'id="f1-' not in two
