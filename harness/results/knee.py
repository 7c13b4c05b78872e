"""The knee of a sweep: the level at which a strategy stops keeping up, from the records alone.

- **Rate sweep** (open loop): the highest rate at which the case keeps its p99 (corrected, i.e.
  from the intended start) under the SLO (`--slo-p99`), with no hang, every repetition
  completed, and at least 99 % of the intended rate achieved. Levels are taken in increasing
  order and the knee is the last one that passes before the first that fails: a level that
  passes again above a failure (a lucky second) does not move the knee up. None when the
  lowest level already fails. A paced closed-loop rate sweep (`--load-model closed`) gets the
  same test, and its reason says that its latencies hide stalls.
- **Concurrency sweep** (closed loop): the concurrency at peak throughput (mean over the
  repetitions) among the levels that completed without a hang; more in flight past it only
  queues.

With repetitions a level passes only if every repetition does (a hang in any is a finding),
and its p99 is the worst repetition's. Pure functions on StrategyRecords or their JSON dicts,
so `compare` can recompute knees from any file; `reason` says in words why the knee is where it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import COMPLETED
from .stats import case_names, record_value

RATE_ACHIEVED = 0.99  # share of the intended rate a level must achieve
DEFAULT_SLO_P99_MS = 100.0


def knees(records: Sequence[Any], slo_p99_ms: float = DEFAULT_SLO_P99_MS) -> list[dict[str, Any]]:
    """RunRecord.knees: one per (case, workload) swept over a level, in order of first appearance."""
    groups: dict[tuple[str, str, str], dict[float, list[Any]]] = {}
    for name, record in zip(case_names(records), records, strict=True):
        level = dict(record_value(record, "level", {}))
        if len(level) != 1:
            continue  # not a sweep
        ((kind, value),) = level.items()
        if kind not in ("rate", "concurrency"):
            continue
        key = (name, str(record_value(record, "workload", "hello")), kind)
        groups.setdefault(key, {}).setdefault(float(value), []).append(record)
    out = []
    for (name, workload, kind), levels in groups.items():
        ordered = sorted(levels.items())
        knee, reason = _rate_knee(ordered, slo_p99_ms) if kind == "rate" else _concurrency_knee(ordered)
        if kind == "rate" and record_value(ordered[0][1][0], "load_model", "open") == "closed":
            reason += (
                "; a paced closed loop: latency from each send, a stall hidden (the open loop's knee is the honest one)"
            )
        out.append(
            {
                "case": name,
                "workload": workload,
                "sweep": kind,
                "knee": knee,
                "slo_p99_ms": slo_p99_ms,
                "reason": reason,
            }
        )
    return out


def level_failure(records: Sequence[Any], rate: float, slo_p99_ms: float) -> str:
    """Why a rate level fails the knee's test, in words; "" when it passes."""
    statuses = sorted({str(record_value(r, "status", "?")) for r in records} - {COMPLETED})
    if statuses:
        return "%s at %g/s" % (", ".join(statuses), rate)
    hangs = sum(int(record_value(r, "requests", {}).get("hang", 0)) for r in records)
    if hangs:
        return "%d hang(s) at %g/s" % (hangs, rate)
    achieved = min(float(record_value(r, "achieved_rate_rps", 0.0)) for r in records)
    if achieved < RATE_ACHIEVED * rate:
        return "only %.0f of %g/s achieved at %g/s" % (achieved, rate, rate)
    p99_ms = max(int(record_value(r, "latency_us", {}).get("p99", 0)) for r in records) / 1000.0
    if not p99_ms or p99_ms > slo_p99_ms:
        return "p99 %.1f ms over the %g ms SLO at %g/s" % (p99_ms, slo_p99_ms, rate) if p99_ms else "no ok response"
    return ""


def _rate_knee(levels: Sequence[tuple[float, list[Any]]], slo_p99_ms: float) -> tuple[float | None, str]:
    knee = None
    for rate, records in levels:
        failure = level_failure(records, rate, slo_p99_ms)
        if failure:
            if knee is None:
                return None, "no level met the SLO: " + failure
            return knee, "the next level failed: " + failure
        knee = rate
    return knee, "every level met the SLO (p99 under %g ms, no hang, rate achieved): the knee is at or above it" % (
        slo_p99_ms
    )


def _concurrency_knee(levels: Sequence[tuple[float, list[Any]]]) -> tuple[float | None, str]:
    best: tuple[float, float] | None = None  # (throughput, concurrency)
    skipped = []
    for concurrency, records in levels:
        statuses = {str(record_value(r, "status", "?")) for r in records}
        hangs = sum(int(record_value(r, "requests", {}).get("hang", 0)) for r in records)
        if statuses != {COMPLETED} or hangs:
            skipped.append("%g" % concurrency)
            continue
        mean = sum(float(record_value(r, "throughput_rps", 0.0)) for r in records) / len(records)
        if mean > 0 and (best is None or mean > best[0]):
            best = (mean, concurrency)
    if best is None:
        return None, "no level completed without a hang"
    reason = "peak %.0f ok/s at concurrency %g" % best
    if skipped:
        reason += " (levels with hangs or failures not counted: %s)" % ", ".join(skipped)
    return best[1], reason


def knee_lines(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per knee, for the terminal under the table."""
    lines = []
    for item in found:
        unit = " req/s" if item["sweep"] == "rate" else " in flight"
        value = "%g%s" % (item["knee"], unit) if item.get("knee") is not None else "none"
        where = item["case"] + ("" if item.get("workload", "hello") == "hello" else " [%s]" % item["workload"])
        lines.append("knee %s: %s (%s)" % (where, value, item.get("reason", "")))
    return lines


def by_key(found: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Knees keyed by (case, workload, sweep), as a JSON string, for matching two runs."""
    return {json.dumps([k["case"], k.get("workload", "hello"), k["sweep"]]): k for k in found}
