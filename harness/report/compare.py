"""Compare mode: per case, the change from the first file (the baseline) to each other file.

Throughput and p99 are compared as means over repetitions; whether the throughput differs is
decided by the project's own test on the per-repetition values (`harness.results.stats.
significant`: Welch's t, which keeps its power at the 2-5 repetitions a benchmark has, where a
rank test cannot reach p < 0.05), the same test `compare` and the verdict use, so the report
never disagrees with them. The values come from the run's `summaries` when it has them, else
from its records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.results.stats import significant

from .data import Level, Record, Run, find_summary, p99_spread_ms, throughput_spread


@dataclass(frozen=True)
class Delta:
    case: str
    workload: str
    level: Level
    baseline: str  # source labels
    candidate: str
    throughput: tuple[float, float]  # means, baseline then candidate
    p99_ms: tuple[float, float]
    hang_rate: tuple[float, float]
    significance: str  # "significant: faster (Welch's t-test, p = 0.012, n = 5 vs 5)" or why there is none

    @property
    def throughput_change(self) -> float | None:
        before, after = self.throughput
        return None if before == 0 else (after - before) / before

    @property
    def p99_change(self) -> float | None:
        before, after = self.p99_ms
        return None if before == 0 else (after - before) / before


def _key(record: Record) -> tuple[str, str, Level]:
    return (record.case, record.workload, record.level)


def _values(run: Run, records: Sequence[Record]) -> tuple[float, ...]:
    first = records[0]
    summary = find_summary(run, first.case, first.workload, first.level)
    if summary and isinstance(summary.get("throughput_rps"), dict):
        values = summary["throughput_rps"].get("values")
        if isinstance(values, list) and values:
            return tuple(float(v) for v in values)
    return throughput_spread(records).values


def significance(before: Sequence[float], after: Sequence[float]) -> str:
    return significant(before, after).describe()


def deltas(runs: Sequence[Run]) -> list[Delta]:
    if len(runs) < 2:
        return []
    baseline = runs[0]
    base: dict[tuple[str, str, Level], list[Record]] = {}
    for record in baseline.records:
        base.setdefault(_key(record), []).append(record)
    out = []
    for candidate in runs[1:]:
        other: dict[tuple[str, str, Level], list[Record]] = {}
        for record in candidate.records:
            other.setdefault(_key(record), []).append(record)
        for key, before in base.items():
            after = other.get(key)
            if not after:
                continue
            b_values, a_values = _values(baseline, before), _values(candidate, after)
            b_p99, a_p99 = p99_spread_ms(before), p99_spread_ms(after)
            out.append(
                Delta(
                    case=key[0],
                    workload=key[1],
                    level=key[2],
                    baseline=baseline.source,
                    candidate=candidate.source,
                    throughput=(_mean(b_values), _mean(a_values)),
                    p99_ms=(b_p99.mean, a_p99.mean),
                    hang_rate=(_mean([r.hang_rate for r in before]), _mean([r.hang_rate for r in after])),
                    significance=significance(b_values, a_values),
                )
            )
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
