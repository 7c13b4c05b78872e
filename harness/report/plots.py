"""The report's figures, drawn with matplotlib from the series in `data.py` and nothing else.

`plan(runs)` says which figures a set of runs calls for (one `PlotSpec` each, built lazily),
so the HTML page and the PNG export draw the same figures. Figures are made with
`matplotlib.figure.Figure` directly, never pyplot: no global state, no GUI backend, the Agg
canvas by default. matplotlib is an optional extra (`hangbench[report]`); `available()` says
whether it is installed, and nothing here imports it before a figure is built.

The percentile spectrum follows HdrHistogram's plotter: x is 1 / (1 - p) on a log scale,
labelled in percent, so 90 %, 99 %, 99.9 % ... 99.999 % are evenly spaced.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from .data import (
    Group,
    Run,
    SweepSeries,
    groups,
    is_sweep,
    level_axis,
    level_label,
    merged_histogram,
    p99_spread_ms,
    spectrum,
    spectrum_x,
    sweep_series,
    throughput_spread,
    time_series,
    workloads,
)

INSTALL_HINT = "plots need matplotlib: pip install 'hangbench[report]'"
# Okabe-Ito: told apart by colour-blind readers too, and in grey print.
# Okabe-Ito (colour-blind safe) first, then CARTO Bold: a `--strategy all` with the twins has 14
# cases, and a colour that comes round again would make two lines of a plot look like one.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999999", "#8C564B",
    "#7F3C8D", "#11A579", "#F2B701", "#E73F74", "#80BA5A", "#E68310", "#3969AC",
)  # fmt: skip
LINESTYLES = ("-", "--", ":", "-.")
SPECTRUM_TICKS = ((1.0, "0%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"), (1e4, "99.99%"), (1e5, "99.999%"))
WIDE = (9.0, 4.2)  # inches: fits a laptop screen at 100 % and an A4 page


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


@dataclasses.dataclass(frozen=True)
class PlotSpec:
    """One figure of the report: where it goes, what it is called, and how to draw it."""

    slug: str  # file name of its PNG
    title: str
    section: str  # "spectrum", "timeseries", "sweep", "spread"
    workload: str
    build: Callable[[], Any]  # -> matplotlib.figure.Figure
    collapsed: bool = False  # shown in a closed <details> (many similar figures)


class Styles:
    """A fixed colour per case and a line style per file, the same in every figure."""

    def __init__(self, runs: Sequence[Run]) -> None:
        cases = sorted({record.case for run in runs for record in run.records})
        self.colours = dict(zip(cases, itertools.cycle(PALETTE)))
        self.styles = {run.source: LINESTYLES[i % len(LINESTYLES)] for i, run in enumerate(runs)}
        self.compare = len(runs) > 1

    def label(self, source: str, case: str) -> str:
        return "%s (%s)" % (case, source) if self.compare else case


def plan(runs: Sequence[Run]) -> list[PlotSpec]:
    styles = Styles(runs)
    specs: list[PlotSpec] = []
    all_groups = groups(runs)
    for workload in workloads(runs):
        mine = [g for g in all_groups if g.workload == workload]
        sweep = is_sweep(runs, workload)
        if sweep:
            series = sweep_series(runs, workload)
            axis = level_axis(g.level for g in mine) or "level"
            specs.append(
                _spec(
                    "sweep",
                    workload,
                    "",
                    "%s: throughput and p99 vs %s" % (workload, axis),
                    sweep_figure,
                    series,
                    axis,
                    styles,
                )
            )
            for source, case in sorted({(r.source, r.case) for g in mine for r in g.records}):
                title = "%s: latency spectrum of %s by %s" % (workload, styles.label(source, case), axis)
                tag = _slug(source, case) if styles.compare else _slug(case)
                specs.append(_spec("spectrum", workload, tag, title, sweep_spectrum_figure, mine, source, case))
        for group in mine:
            where = workload + (" at " + level_label(group.level) if group.level else "")
            tag = level_label(group.level)
            if not sweep and any(r.requests.get("ok", 0) for r in group.records):  # else nothing to draw
                specs.append(
                    _spec(
                        "spectrum",
                        workload,
                        tag,
                        "%s: latency percentile spectrum" % where,
                        spectrum_figure,
                        group,
                        styles,
                    )
                )
            if any(r.intervals for r in group.records):
                spec = _spec("timeseries", workload, tag, "%s: over time" % where, timeseries_figure, group, styles)
                specs.append(dataclasses.replace(spec, collapsed=sweep))
            if not sweep and any(len(reps) > 1 for reps in group.series().values()):
                specs.append(
                    _spec("spread", workload, tag, "%s: spread over repetitions" % where, spread_figure, group, styles)
                )
    return specs


def _spec(section: str, workload: str, tag: str, title: str, draw: Callable[..., Any], *args: Any) -> PlotSpec:
    return PlotSpec(_slug(section, workload, tag), title, section, workload, lambda: draw(*args))


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", "-".join(p for p in parts if p)).strip("-").lower()


# --- figures ----------------------------------------------------------------------------------


def _figure(size: tuple[float, float] = WIDE, rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    for ax in axes.flat:
        ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _legend(ax: Any, figure: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # "hangs" is marked once per case, listed once, last
    if "hangs" in unique:
        unique["hangs"] = unique.pop("hangs")
    if unique:
        figure.legend(list(unique.values()), list(unique), loc="outside right upper", fontsize=8, frameon=False)


def _spectrum_axes(ax: Any, medians_ms: Sequence[float]) -> None:
    """Linear latency as HdrHistogram's plotter draws it, unless the lines differ so much (a
    sweep from idle to overload) that a linear axis would flatten all but the slowest."""
    positive = [m for m in medians_ms if m > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
        _plain_numbers(ax.yaxis)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xscale("log")
    ax.set_xlim(1.0, 1e5)
    ax.set_xticks([x for x, _ in SPECTRUM_TICKS], [label for _, label in SPECTRUM_TICKS])
    ax.minorticks_off()
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")


def _plain_numbers(axis: Any) -> None:
    """1, 10, 100 rather than 10^0, 10^1, 10^2 on a log axis: these are milliseconds or levels."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    if axis.get_scale() == "log" and axis.axis_name == "y":
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: "%g" % value))


def spectrum_figure(group: Group, styles: Styles) -> Any:
    figure, axes = _figure()
    ax = axes[0, 0]
    empty, medians = [], []
    for (source, case), records in group.series().items():
        spec = spectrum(merged_histogram(records))
        if spec is None:
            empty.append(case)
            continue
        medians.append(spec.at(50.0) / 1000.0)
        xs = [spectrum_x(p) for p in spec.percentiles]
        ax.plot(
            xs,
            [v / 1000.0 for v in spec.values_us],
            label=styles.label(source, case),
            color=styles.colours[case],
            linestyle=styles.styles[source],
            linewidth=1.6,
        )
    _spectrum_axes(ax, medians)
    if empty:
        names = sorted(set(empty))
        ax.text(
            0.01,
            0.98,
            "no ok responses: " + (", ".join(names) if len(names) <= 3 else "%d cases (see the table)" % len(names)),
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color="#666666",
        )
    _legend(ax, figure)
    return figure


def sweep_spectrum_figure(mine: Sequence[Group], source: str, case: str) -> Any:
    from matplotlib import colormaps

    figure, axes = _figure()
    ax = axes[0, 0]
    cmap = colormaps["viridis"]
    ordered = [g for g in mine if any(r.source == source and r.case == case for r in g.records)]
    medians = []
    for i, group in enumerate(ordered):
        records = [r for r in group.records if r.source == source and r.case == case]
        spec = spectrum(merged_histogram(records))
        if spec is None:
            continue
        shade = cmap(0.9 * i / max(1, len(ordered) - 1))
        medians.append(spec.at(50.0) / 1000.0)
        xs = [spectrum_x(p) for p in spec.percentiles]
        ax.plot(xs, [v / 1000.0 for v in spec.values_us], label=level_label(group.level), color=shade, linewidth=1.4)
    _spectrum_axes(ax, medians)
    _legend(ax, figure)
    return figure


def timeseries_figure(group: Group, styles: Styles) -> Any:
    figure, axes = _figure((9.0, 5.4), rows=3, sharex=True)
    panels = (("ok/s", "ok_rps"), ("p99 (ms)", "p99_ms"), ("hangs (%)", "hang_pct"))
    for (source, case), records in group.series().items():
        for record in records:
            series = time_series(record)
            if series is None:
                continue
            first = record is records[0]
            for (_, name), ax in zip(panels, axes[:, 0], strict=True):
                ax.plot(
                    series.t_s,
                    getattr(series, name),
                    color=styles.colours[case],
                    linestyle=styles.styles[source],
                    linewidth=1.3 if first else 0.8,
                    alpha=1.0 if first else 0.5,
                    label=styles.label(source, case) if first else None,
                )
    # Intervals at or after the end of the measurement window hold only requests that started in
    # it and ended later (stragglers, hangs at their deadline): a line shows where that begins.
    window = max((r.elapsed_s for r in group.records if r.intervals), default=0.0)
    last = max((float(i.get("t_s", 0.0)) for r in group.records for i in r.intervals), default=0.0)
    for (ylabel, _), ax in zip(panels, axes[:, 0], strict=True):
        if 0 < window <= last:
            ax.axvline(window, color="#888888", linestyle=":", linewidth=1.0)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    axes[-1, 0].set_xlabel("time (s)")
    _legend(axes[0, 0], figure)
    return figure


def sweep_figure(series: Sequence[SweepSeries], axis: str, styles: Styles) -> Any:
    figure, axes = _figure(WIDE, cols=2)
    left, right = axes[0, 0], axes[0, 1]
    slo = None
    for item in series:
        colour, style = styles.colours[item.case], styles.styles[item.source]
        label = styles.label(item.source, item.case)
        left.errorbar(
            item.levels,
            [s.mean for s in item.throughput],
            yerr=[s.sd for s in item.throughput],
            color=colour,
            linestyle=style,
            marker="o",
            markersize=3.5,
            capsize=2,
            label=label,
        )
        hung = [(lv, s.mean) for lv, s, n in zip(item.levels, item.throughput, item.hangs, strict=True) if n]
        if hung:
            left.scatter(*zip(*hung, strict=True), marker="x", s=40, color="#b00020", zorder=5, label="hangs")
        p99_levels = [lv for lv, s in zip(item.levels, item.p99_ms, strict=True) if s.values]
        p99 = [s for s in item.p99_ms if s.values]
        right.errorbar(
            p99_levels,
            [s.mean for s in p99],
            yerr=[s.sd for s in p99],
            color=colour,
            linestyle=style,
            marker="o",
            markersize=3.5,
            capsize=2,
        )
        if item.knee is not None:
            for ax in (left, right):
                ax.axvline(item.knee, color=colour, linestyle=(0, (4, 3)), linewidth=1.0, alpha=0.8)
            right.annotate(
                "knee %g" % item.knee,
                (item.knee, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -2),
                textcoords="offset points",
                fontsize=7,
                color=colour,
                ha="left",
                va="top",
            )
        slo = slo if item.slo_p99_ms is None else item.slo_p99_ms
    if slo is not None:
        right.axhline(slo, color="#555555", linestyle=":", linewidth=1.0)
        right.annotate(
            "SLO p99 %g ms" % slo,
            (0.01, slo),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="#555555",
            va="bottom",
        )
    levels = sorted({lv for item in series for lv in item.levels})
    for ax in (left, right):
        if levels and levels[0] > 0 and levels[-1] / levels[0] >= 10:
            ax.set_xscale("log")
            ax.set_xticks(levels)
            ax.minorticks_off()
            _plain_numbers(ax.xaxis)
        ax.set_xlabel("offered rate (req/s)" if axis == "rate" else axis)
        ax.set_ylim(bottom=0)
    left.set_ylabel("ok/s")
    right.set_ylabel("p99 (ms)")
    _legend(left, figure)
    return figure


def spread_figure(group: Group, styles: Styles) -> Any:
    figure, axes = _figure(WIDE, cols=2)
    names = list(group.series())
    for i, key in enumerate(names):
        _, case = key
        records = group.series()[key]
        for ax, spread in ((axes[0, 0], throughput_spread(records)), (axes[0, 1], p99_spread_ms(records))):
            if not spread.values:
                continue
            n = len(spread.values)
            jitter = [i + 0.25 * ((j / (n - 1)) - 0.5) if n > 1 else float(i) for j in range(n)]
            ax.scatter(jitter, spread.values, s=14, color=styles.colours[case], alpha=0.8, zorder=3)
            ax.errorbar(
                [i + 0.32],
                [spread.mean],
                yerr=[spread.sd],
                color="#333333",
                marker="_",
                markersize=10,
                capsize=3,
                zorder=4,
            )
    for ax, ylabel in ((axes[0, 0], "ok/s per repetition"), (axes[0, 1], "p99 (ms) per repetition")):
        ax.set_xticks(range(len(names)), [styles.label(s, c) for s, c in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_xlim(-0.6, len(names) - 0.4)
    return figure


# --- output -----------------------------------------------------------------------------------


def to_svg(figure: Any, prefix: str) -> str:
    """Inline SVG with its ids made unique to this figure (one page holds many SVGs)."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r'(\bid="|href="#|url\(#)', r"\g<1>" + prefix + "-", text)


def to_png(figure: Any, dpi: int = 150) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
