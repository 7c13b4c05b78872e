"""Every series the report plots and tabulates, computed in one place from the records.

The report draws nothing that this module did not compute: `plots.py` turns these series into
figures and `sections.py` into tables, so a test that compares the series with the JSON checks
what the reader sees. Latency comes from the encoded HdrHistogram, not from the five stored
percentiles, so the percentile spectrum has every point the data has; repetitions of a case are
added bucket by bucket (exact) before the spectrum is taken.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.load.metrics import LatencyHistogram

# Loading lives in runs.py; its names are re-exported so that callers need one module.
from .runs import DEFAULT_WORKLOAD, Level, Record, Run, normal_level
from .runs import OUTCOME_KINDS as OUTCOME_KINDS
from .runs import ReportError as ReportError
from .runs import load_run as load_run
from .runs import load_runs as load_runs

# The percentile axis runs to 99.999 % as HdrHistogram's plotter draws it: x = 1 / (1 - p).
MAX_PERCENTILE = 99.999
MARKED_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
POINTS_PER_DECADE = 20

# --- levels -----------------------------------------------------------------------------------


def level_label(level: Level) -> str:
    if not level:
        return ""
    return ", ".join("%s %s" % (name, _number(value)) for name, value in level)


def level_axis(levels: Iterable[Level]) -> str | None:
    """The swept quantity ("concurrency", "rate") when the levels differ in exactly one."""
    names = {name for level in levels for name, _ in level}
    return next(iter(names)) if len(names) == 1 else None


def level_value(level: Level) -> float:
    return level[0][1] if level else 0.0


def _number(value: float) -> str:
    return "%d" % value if float(value).is_integer() else "%g" % value


# --- the latency percentile spectrum ----------------------------------------------------------


@dataclass(frozen=True)
class Spectrum:
    """Latency (µs) at percentiles, as HdrHistogram's percentile-distribution plot draws it."""

    percentiles: tuple[float, ...]
    values_us: tuple[int, ...]
    total: int

    def at(self, percentile: float) -> int:
        return self.values_us[self.percentiles.index(percentile)]


def spectrum_x(percentile: float) -> float:
    """The plot's x coordinate: 1 / (1 - p), so 90 %, 99 %, 99.9 % are equally spaced."""
    return 1.0 / (1.0 - percentile / 100.0)


def percentile_grid(total: int) -> tuple[float, ...]:
    """Percentiles log-spaced in 1/(1-p) up to what `total` samples resolve (at most 99.999)."""
    top_x = min(spectrum_x(MAX_PERCENTILE), max(float(total), 2.0))
    steps = math.floor(math.log10(top_x) * POINTS_PER_DECADE + 1e-9)
    points = {round(100.0 * (1.0 - 10 ** (-k / POINTS_PER_DECADE)), 6) for k in range(steps + 1)}
    points.update(p for p in MARKED_PERCENTILES if spectrum_x(p) <= top_x * (1 + 1e-9))
    points.add(round(100.0 * (1.0 - 1.0 / top_x), 6))
    return tuple(sorted(points))


def spectrum(histogram: str) -> Spectrum | None:
    """None when the histogram holds no sample (no ok response: nothing to draw)."""
    if not histogram:
        return None
    # One pass over the buckets for all the percentiles (get_value_at_percentile walks them
    # from the start for each); the values are the same, as the tests check against latency_us.
    decoded = _decoded(lambda: HdrHistogram.decode(histogram.encode("ascii")))
    total = int(decoded.get_total_count())
    if total == 0:
        return None
    grid = percentile_grid(total)
    values = decoded.get_percentile_to_value_dict(list(grid))
    return Spectrum(grid, tuple(int(values[p]) for p in grid), total)


def merged_histogram(records: Iterable[Record]) -> str:
    """The repetitions of one case added bucket by bucket (HdrHistograms add exactly)."""
    with_samples = [record for record in records if record.histogram]
    if len(with_samples) == 1:  # nothing to add (and adding walks every bucket in Python)
        return with_samples[0].histogram
    merged = LatencyHistogram()
    for record in with_samples:
        merged.merge(_decoded(lambda text=record.histogram: LatencyHistogram.decode(text)))
    return merged.encode()


def _decoded(decode: Any) -> Any:
    """A record's histogram, decoded; a file edited by hand or truncated can hold anything there
    (bad base64, a bad zlib stream, a string that is not ASCII): one sentence, not a traceback."""
    try:
        return decode()
    except Exception as error:  # binascii.Error, zlib.error, UnicodeError, hdrh's own errors
        raise ReportError(
            "a record's histogram is not an encoded HdrHistogram (%s: %s)" % (type(error).__name__, error)
        ) from None


# --- time series ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSeries:
    """Per interval of measurement: when, ok/s, hang share and p99 latency (ms)."""

    t_s: tuple[float, ...]
    ok_rps: tuple[float, ...]
    hang_pct: tuple[float, ...]
    p99_ms: tuple[float, ...]


def time_series(record: Record) -> TimeSeries | None:
    intervals = record.intervals
    if not intervals:
        return None
    times = [float(item.get("t_s", i)) for i, item in enumerate(intervals)]
    ok, hang, p99 = [], [], []
    for i, item in enumerate(intervals):
        width = times[i] - times[i - 1] if i else (times[1] - times[0] if len(times) > 1 else 1.0)
        raw_counts = item.get("counts")
        counts: dict[str, Any] = raw_counts if isinstance(raw_counts, dict) else {}
        total = sum(int(v) for v in counts.values())
        ok.append(int(counts.get("ok", 0)) / width if width > 0 else 0.0)
        hang.append(100.0 * int(counts.get("hang", 0)) / total if total else 0.0)
        p99.append(int(item.get("p99_us", 0)) / 1000.0)
    return TimeSeries(tuple(times), tuple(ok), tuple(hang), tuple(p99))


# --- groups, sweeps and repetitions -----------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """The records of every run at one workload and level: one spectrum / time-series plot."""

    workload: str
    level: Level
    records: tuple[Record, ...]

    def series(self) -> dict[tuple[str, str], list[Record]]:
        """(source, case) -> its repetitions, in first-seen order."""
        out: dict[tuple[str, str], list[Record]] = {}
        for record in self.records:
            out.setdefault((record.source, record.case), []).append(record)
        return out


def all_records(runs: Sequence[Run]) -> list[Record]:
    return [record for run in runs for record in run.records]


def groups(runs: Sequence[Run]) -> list[Group]:
    found: dict[tuple[str, Level], list[Record]] = {}
    for record in all_records(runs):
        found.setdefault((record.workload, record.level), []).append(record)
    ordered = sorted(found, key=lambda key: (key[0], key[1] and level_value(key[1])))
    return [Group(workload, level, tuple(found[(workload, level)])) for workload, level in ordered]


def workloads(runs: Sequence[Run]) -> list[str]:
    return sorted({record.workload for record in all_records(runs)})


def is_sweep(runs: Sequence[Run], workload: str) -> bool:
    levels = {r.level for r in all_records(runs) if r.workload == workload}
    return len(levels) > 1 and level_axis(levels) is not None


@dataclass(frozen=True)
class Spread:
    """One value per repetition, for a strip plot; mean and sample sd over the repetitions."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else 0.0

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def throughput_spread(records: Sequence[Record]) -> Spread:
    return Spread(tuple(r.throughput_rps for r in sorted(records, key=lambda r: r.repetition) if r.measured))


def p99_spread_ms(records: Sequence[Record]) -> Spread:
    ordered = sorted(records, key=lambda r: r.repetition)
    return Spread(tuple(r.latency_us.get("p99", 0) / 1000.0 for r in ordered if r.measured and r.latency_us.get("p99")))


@dataclass(frozen=True)
class SweepSeries:
    """One case's sweep: per level (ascending), mean throughput and mean p99 over repetitions."""

    source: str
    case: str
    levels: tuple[float, ...]
    throughput: tuple[Spread, ...]
    p99_ms: tuple[Spread, ...]
    hangs: tuple[int, ...] = ()  # hung requests at each level, summed over repetitions
    knee: float | None = None
    slo_p99_ms: float | None = None
    knee_reason: str = ""


def sweep_series(runs: Sequence[Run], workload: str) -> list[SweepSeries]:
    out = []
    for run in runs:
        by_case: dict[str, dict[float, list[Record]]] = {}
        for record in run.records:
            if record.workload == workload and record.level:
                by_case.setdefault(record.case, {}).setdefault(level_value(record.level), []).append(record)
        for case, by_level in by_case.items():
            levels = tuple(sorted(by_level))
            knee = find_knee(run, case, workload)
            out.append(
                SweepSeries(
                    source=run.source,
                    case=case,
                    levels=levels,
                    throughput=tuple(throughput_spread(by_level[v]) for v in levels),
                    p99_ms=tuple(p99_spread_ms(by_level[v]) for v in levels),
                    hangs=tuple(sum(r.requests.get("hang", 0) for r in by_level[v]) for v in levels),
                    knee=_float(knee.get("knee")) if knee else None,
                    slo_p99_ms=_float(knee.get("slo_p99_ms")) if knee else None,
                    knee_reason=str(knee.get("reason", "")) if knee else "",
                )
            )
    return out


def find_knee(run: Run, case: str, workload: str) -> dict[str, Any] | None:
    for knee in run.knees:
        if knee.get("case") == case and str(knee.get("workload") or DEFAULT_WORKLOAD) == workload:
            return knee
    return None


def find_summary(run: Run, case: str, workload: str, level: Level) -> dict[str, Any] | None:
    for summary in run.summaries:
        summary_level = normal_level(summary.get("level"))
        same_workload = str(summary.get("workload") or DEFAULT_WORKLOAD) == workload
        if summary.get("case") == case and same_workload and summary_level == level:
            return summary
    return None


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a case at a workload and level, over its repetitions."""

    source: str
    case: str
    workload: str
    level: Level
    records: tuple[Record, ...] = field(default=())

    @property
    def first(self) -> Record:
        return self.records[0]


def table_rows(runs: Sequence[Run]) -> list[Row]:
    rows: dict[tuple[str, str, Level, str], list[Record]] = {}
    for record in all_records(runs):
        rows.setdefault((record.source, record.workload, record.level, record.case), []).append(record)
    return [
        Row(source, case, workload, level, tuple(records)) for (source, workload, level, case), records in rows.items()
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
