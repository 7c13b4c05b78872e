"""The verdict: per workload, which strategy to use, and how sure that is.

Computed from the summaries alone (`stats.summarize`), so `python -m harness verdict X.json`
reprints it from any results file and every figure in it traces back to the repetitions.

Only sound cases are ranked: every repetition completed, not one hang, at least one ok
response, and not broken on purpose. The others are listed under `excluded` with their status
and why; a case that hung is a finding, never a slow entry in a ranking. Among the sound cases
the best has the highest mean throughput; the ones `tied` with it are those a significance test
on the repetitions (`stats.significant`, Welch's t by default) cannot tell apart from it; the
runner-up is the next by mean, tied or not, and `ratio_to_runner_up` is best mean / its mean.
A summary carries a level (a sweep's concurrency or rate); the verdict is made per
(workload, level), and an entry's `level` says which ({} for an ordinary run).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from ..errors import COMPLETED, UsageError
from .stats import ALPHA, ONE_REPETITION, case_names, level_label, significant, summarize

HUNG = "hung"
BROKEN = "broken"
NO_OK = "no-response"


def verdict(
    summaries: Sequence[Mapping[str, Any]], broken: Mapping[str, object] | None = None, alpha: float = ALPHA
) -> dict[str, Any]:
    """RunRecord.verdict from RunRecord.summaries. `broken` maps a case name to a true value
    (True, or the strategy's statement of how it misbehaves) when it is broken on purpose."""
    broken = broken or {}
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for summary in summaries:
        key = (str(summary.get("workload", "hello")), json.dumps(summary.get("level") or {}, sort_keys=True))
        groups.setdefault(key, []).append(summary)
    return {
        "workloads": [
            _one(workload, json.loads(level), group, broken, alpha) for (workload, level), group in groups.items()
        ]
    }


def _one(
    workload: str, level: dict[str, Any], group: list[Mapping[str, Any]], broken: Mapping[str, object], alpha: float
) -> dict[str, Any]:
    sound: list[Mapping[str, Any]] = []
    excluded = []
    for summary in group:
        status, why = _unsound(summary, broken.get(summary["case"]))
        if status:
            excluded.append({"case": summary["case"], "status": status, "why": why})
        else:
            sound.append(summary)
    sound.sort(key=lambda s: -float(s["throughput_rps"]["mean"]))
    entry: dict[str, Any] = {
        "workload": workload,
        "level": level,
        "best": None,
        "tied": [],
        "runner_up": None,
        "ratio_to_runner_up": None,
        "significance": "no strategy completed this workload soundly (every repetition, no hang)",
        "excluded": excluded,
    }
    if not sound:
        return entry
    best = sound[0]
    entry["best"] = best["case"]
    if len(sound) == 1:
        entry["significance"] = "the only sound strategy"
        return entry
    best_values = best["throughput_rps"]["values"]
    for other in sound[1:]:
        comparison = significant(other["throughput_rps"]["values"], best_values, alpha)
        if comparison.p is not None and not comparison.significant:
            entry["tied"].append(other["case"])
    runner_up = sound[1]
    entry["runner_up"] = runner_up["case"]
    entry["ratio_to_runner_up"] = best["throughput_rps"]["mean"] / runner_up["throughput_rps"]["mean"]
    comparison = significant(runner_up["throughput_rps"]["values"], best_values, alpha)
    if comparison.p is None:
        entry["significance"] = ONE_REPETITION
    elif comparison.significant:
        entry["significance"] = "significant: faster than %s (%s)" % (runner_up["case"], comparison.evidence())
    else:
        entry["significance"] = "no significant difference from %s (%s)" % (runner_up["case"], comparison.evidence())
    return entry


def _unsound(summary: Mapping[str, Any], broken: object) -> tuple[str, str]:
    """(status, why) of a case that must not be ranked; ("", "") for a sound one."""
    statuses = [str(s) for s in summary.get("statuses", [])]
    n = len(statuses) or int(summary.get("n", 0))
    reasons = []
    failed = sorted({s for s in statuses if s != COMPLETED})
    if failed:
        count = sum(1 for s in statuses if s != COMPLETED)
        reasons.append("%s in %d of %d repetition(s)" % (", ".join(failed), count, n))
    hangs = int(summary.get("hangs", 0))
    if hangs:
        reasons.append("%d hang(s) over %d repetition(s)" % (hangs, n))
    mean = summary.get("throughput_rps", {}).get("mean")
    if not failed and not hangs and not mean:
        reasons.append("not one complete response")
    if broken:
        reasons.append("broken on purpose" + (": " + broken if isinstance(broken, str) else ""))
    if not reasons:
        return "", ""
    status = ", ".join(failed) if failed else HUNG if hangs else NO_OK if not mean else BROKEN
    return status, "; ".join(reasons)


# -- for people ----------------------------------------------------------------------------------

HEADERS = [
    "workload",
    "best",
    "ok/s (95% CI)",
    "tied with best",
    "runner-up",
    "ratio",
]


def format_verdict(result: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]] = ()) -> str:
    """The verdict as a terminal table, then per workload a line with the significance and the
    cases not ranked (long text under the table keeps it within 120 columns); with the
    summaries, the best case's mean and interval too."""
    means = {(s["case"], s.get("workload", "hello"), _level_key(s.get("level"))): s for s in summaries}
    rows, notes = [], []
    for entry in result.get("workloads", []):
        label = entry["workload"] + (" @ " + level_label(entry["level"]) if entry.get("level") else "")
        summary = means.get((entry["best"], entry["workload"], _level_key(entry.get("level"))))
        ratio = entry.get("ratio_to_runner_up")
        rows.append(
            [
                label,
                entry["best"] or "-",
                _throughput(summary) if summary else "-",
                ", ".join(entry.get("tied", [])) or "-",
                entry.get("runner_up") or "-",
                "%.2f" % ratio if ratio is not None else "-",
            ]
        )
        unranked = "; ".join("%s (%s)" % (x["case"], x["status"]) for x in entry.get("excluded", []))
        note = "%s: %s" % (label, entry.get("significance") or "no significance test")
        notes.append(
            textwrap.fill(note + ("; not ranked: " + unranked if unranked else ""), 116, subsequent_indent="    ")
        )
    table = tabulate(rows, headers=HEADERS, tablefmt="simple", disable_numparse=True)
    return table + ("\n" + "\n".join(notes) if notes else "")


def _level_key(level: object) -> str:
    return json.dumps(level or {}, sort_keys=True)


def _throughput(summary: Mapping[str, Any]) -> str:
    estimate = summary["throughput_rps"]
    if estimate.get("mean") is None:
        return "-"
    if not estimate.get("ci95"):
        return "%.0f" % estimate["mean"]
    low, high = estimate["ci95"]
    return "%.0f (%.0f to %.0f)" % (estimate["mean"], low, high)  # "to": a lower bound may be negative


def from_run(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(verdict, summaries) of a results file's JSON: its own when it has them (schema 2), else
    computed from its strategy records (schema 1 files have neither)."""
    records = data.get("strategies") or []
    summaries = data.get("summaries") or summarize(records)
    stored = data.get("verdict")
    if stored:
        return dict(stored), list(summaries)
    broken = {name: field_broken for name, field_broken in _broken(records).items() if field_broken}
    return verdict(summaries, broken), list(summaries)


def _broken(records: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    return {name: record.get("broken") for name, record in zip(case_names(records), records, strict=True)}


def verdict_main(path: str) -> int:
    """`python -m harness verdict results/X.json`: print the verdict of a saved run."""
    from .jsonio import read_json_file  # a regular file of bounded size, finite numbers only
    from .records import ResultsError

    try:
        data = read_json_file(path)
    except ResultsError as error:
        raise UsageError(str(error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("strategies"), list):
        raise UsageError("%s is not a hangbench results file (no list of strategy records)" % path)
    try:
        result, summaries = from_run(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UsageError("%s is not a hangbench results file (bad record: %s)" % (path, error)) from None
    print(format_verdict(result, summaries))
    sys.stdout.flush()
    return 0
