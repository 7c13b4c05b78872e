"""CI gates: `--fail-if` thresholds and `--fail-if-slower` against a baseline.

A threshold is a *failure* condition, written `[CASE:]METRIC OP VALUE` — `hang_rate>0`,
`p99_ms>50`, `throughput_rps<1000`, `threads:p99_ms>20`. The language is deliberately tiny and
parsed with one regular expression, never `eval`: a threshold comes from a command line or a
scenario file and must not run code. k6 writes pass conditions (`p(99)<50`); a CI gate reads
more plainly as the condition that fails the build, and `--fail-if` says which it is.

Metrics (per record, i.e. per case, workload, level and repetition; a hang in any repetition
is a finding, so thresholds are checked on every repetition, never on an average):

    throughput_rps   complete 2xx responses per second
    ok, hangs, errors  request counts (errors: every kind but ok and hang)
    hang_rate, error_rate  shares of all requests, 0..1; VALUE may be written with % (`hang_rate>0.1%`)
    p50_ms p90_ms p99_ms p999_ms max_ms  latency of ok responses, milliseconds
    server_cpu_s_per_1k, server_peak_rss_mb

Which records a threshold applies to: with a `CASE:` prefix, the records of that case (a
strategy name, or the table's case name such as `asyncio-executor/spawn`); without one, every
record of a strategy that is not `broken` — plus the broken ones the user named explicitly with
`--strategy` (`--strategy pool-fromfd --fail-if 'hang_rate>0'` is a question about pool-fromfd).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_PATTERN = re.compile(
    r"^\s*(?:(?P<case>[A-Za-z0-9_.\-/]+)\s*:\s*)?(?P<metric>[a-z0-9_]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?\s*$"
)
_RATES = ("hang_rate", "error_rate")


def _latency(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def get(record: Mapping[str, Any]) -> float | None:
        value = (record.get("latency_us") or {}).get(key)
        return None if value is None else float(value) / 1000.0

    return get


def _count(*kinds: str, exclude: tuple[str, ...] = ()) -> Callable[[Mapping[str, Any]], float]:
    def get(record: Mapping[str, Any]) -> float:
        counts = record.get("requests") or {}
        if exclude:
            return float(sum(int(v) for k, v in counts.items() if k not in exclude))
        return float(sum(int(counts.get(kind, 0)) for kind in kinds))

    return get


def _field(name: str) -> Callable[[Mapping[str, Any]], float | None]:
    def get(record: Mapping[str, Any]) -> float | None:
        value = record.get(name)
        return None if value is None else float(value)

    return get


METRICS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "throughput_rps": _field("throughput_rps"),
    "ok": _count("ok"),
    "hangs": _count("hang"),
    "errors": _count(exclude=("ok", "hang")),
    "hang_rate": _field("hang_rate"),
    "error_rate": _field("error_rate"),
    "p50_ms": _latency("p50"),
    "p90_ms": _latency("p90"),
    "p99_ms": _latency("p99"),
    "p999_ms": _latency("p999"),
    "max_ms": _latency("max"),
    "server_cpu_s_per_1k": _field("server_cpu_s_per_1k"),
    "server_peak_rss_mb": _field("server_peak_rss_mb"),
}


@dataclass(frozen=True)
class Threshold:
    """One parsed `--fail-if` condition."""

    text: str
    case: str | None
    metric: str
    op: str
    value: float

    def failed_by(self, record: Mapping[str, Any]) -> float | None:
        """The record's value of the metric when the condition holds (the gate fails), else None."""
        actual = METRICS[self.metric](record)
        if actual is None:
            return None
        return actual if _OPS[self.op](actual, self.value) else None


@dataclass(frozen=True)
class Violation:
    """A threshold that failed on one record, or a case that did not run to the end."""

    case: str
    message: str


def parse(text: str) -> Threshold:
    """Parse `[CASE:]METRIC OP VALUE[%]`; a UsageError names what is wrong."""
    match = _PATTERN.match(text)
    if not match:
        raise UsageError(f"--fail-if {text!r} is not of the form METRIC OP VALUE, e.g. 'p99_ms>50'")
    metric = match["metric"]
    if metric not in METRICS:
        import difflib

        near = difflib.get_close_matches(metric, list(METRICS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(METRICS)}"
        raise UsageError(f"--fail-if {text!r}: unknown metric {metric!r}{hint}")
    value = float(match["value"])
    if not math.isfinite(value):  # 1e999 is inf: a comparison that can never (or always) hold
        raise UsageError(f"--fail-if {text!r}: the value must be a finite number")
    if match["pct"]:
        if metric not in _RATES:
            raise UsageError(f"--fail-if {text!r}: only {' and '.join(_RATES)} take a % value")
        value /= 100.0
    return Threshold(text=text.strip(), case=match["case"], metric=metric, op=match["op"], value=value)


def parse_all(texts: Iterable[str]) -> list[Threshold]:
    rules: list[Threshold] = []
    for text in texts:
        rule = parse(text)
        if any((r.case, r.metric, r.op, r.value) == (rule.case, rule.metric, rule.op, rule.value) for r in rules):
            raise UsageError(f"--fail-if {text!r} is given twice; give each threshold once")
        rules.append(rule)
    return rules


def parse_slower(text: str) -> float:
    """`10%` or `0.1` -> 0.10: the tolerated drop in throughput against a baseline."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--fail-if-slower {text!r} is not a percentage such as 10%") from None
    if not 0.0 <= value < 1.0:
        raise UsageError(f"--fail-if-slower {text!r} must be between 0% and 100%")
    return value


def case_of(record: Mapping[str, Any]) -> str:
    """The name a threshold's `CASE:` prefix matches: the strategy, with its start method when given."""
    method = record.get("start_method")
    return f"{record['strategy']}/{method}" if method else str(record["strategy"])


def _applies(threshold: Threshold, record: Mapping[str, Any], named: set[str]) -> bool:
    if threshold.case is not None:
        return threshold.case in (record["strategy"], case_of(record), record.get("case"))
    return not record.get("broken") or record["strategy"] in named


def check(
    records: Iterable[Mapping[str, Any]], thresholds: Iterable[Threshold], named: Iterable[str] = ()
) -> list[Violation]:
    """Every threshold that fails on a record it applies to, in record order."""
    named_set = set(named)
    rules = list(thresholds)
    violations: list[Violation] = []
    for record in records:
        for rule in rules:
            if not _applies(rule, record, named_set):
                continue
            actual = rule.failed_by(record)
            if actual is not None:
                where = _where(record)
                violations.append(Violation(where, f"{where}: {rule.text} (measured {_show(rule.metric, actual)})"))
    return violations


def check_failures(
    records: Iterable[Mapping[str, Any]], ok_statuses: Iterable[str], named: Iterable[str] = ()
) -> list[Violation]:
    """Cases that did not run to the end (failed to start, crashed, timed out, ...).

    Broken strategies are expected to misbehave and are exempt, unless the user named them.
    """
    allowed = set(ok_statuses)
    named_set = set(named)
    out = []
    for record in records:
        if record.get("status") in allowed:
            continue
        if record.get("broken") and record["strategy"] not in named_set:
            continue
        where = _where(record)
        out.append(Violation(where, f"{where}: status {record.get('status')}"))
    return out


def check_slower(
    baseline: Iterable[Mapping[str, Any]], candidate: Iterable[Mapping[str, Any]], tolerance: float
) -> list[Violation]:
    """Cases whose mean throughput fell by more than `tolerance` against the baseline's same case."""

    def means(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
        groups: dict[tuple[str, str, str], list[float]] = {}
        for record in records:
            key = (
                case_of(record),
                str(record.get("workload", "hello")),
                repr(sorted((record.get("level") or {}).items())),
            )
            groups.setdefault(key, []).append(float(record.get("throughput_rps") or 0.0))
        return {key: sum(values) / len(values) for key, values in groups.items()}

    before, after = means(baseline), means(candidate)
    out = []
    for key, new in after.items():
        old = before.get(key)
        if old is None or old <= 0:
            continue
        if new < old * (1.0 - tolerance):
            where = key[0] if key[1] == "hello" else f"{key[0]} [{key[1]}]"
            change = (new - old) / old * 100.0
            out.append(Violation(where, f"{where}: throughput {old:.0f} -> {new:.0f} ok/s ({change:+.1f} %)"))
    return out


def _where(record: Mapping[str, Any]) -> str:
    where = str(record.get("case") or case_of(record))  # the table's name for it, when the caller gave one
    workload = record.get("workload")
    if workload and workload != "hello":
        where += f" [{workload}]"
    level = record.get("level") or {}
    if level:
        where += " " + ",".join(f"{k}={v:g}" for k, v in sorted(level.items()))
    if record.get("repetition"):
        where += f" #{int(record['repetition']) + 1}"
    return where


def _show(metric: str, value: float) -> str:
    if metric in _RATES:
        return f"{value * 100:.3g} %"
    return f"{value:g}"
