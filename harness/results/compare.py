"""`python -m harness compare A.json B.json`: the change between two saved runs, and whether it is real.

Records are matched by (strategy, start method, python, workload, level); each match holds all
of its repetitions. The columns are the throughput (mean over repetitions), p99 and hang changes
(hangs as count and share: one hang in 30,000 requests is `1 (0.00333%)`, not `0.0`), and, when
both sides have at least two repetitions, whether the throughput change is significant
(`stats.significant`: Welch's t on the repetitions, p given) -- "no significant difference" is
the answer wherever the change is within the noise. With one repetition on either side no
significance can be given, and the output says so once. A sweep compares level by level, then
knee by knee.

Two runs of different workloads (what each request asks for, how it is read, how many are in
flight, what counts as a hang) do not compare: a content-length run against an eof run would
print "p99 -100 %". That, a file that cannot be read, or one that is not a results file is the
user's mistake: one sentence, exit status 2 (`UsageError`). Runs made on a different CPU,
kernel or Python compare, with a one-line warning (pyperf's checked metadata).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Sequence, Tuple

from tabulate import tabulate

from ..errors import UsageError
from .jsonio import read_run
from .knee import by_key
from .records import ResultsError, RunRecord, StrategyRecord
from .stats import ONE_REPETITION, format_p, level_label, significant
from .table import case_name, varying

HEADERS = ["strategy", "status", "ok/s", "change", "p99 ms", "change", "hangs", "hang rate change (pts)"]
# Config keys that define the workload; runs that differ in one of them measure different things.
WORKLOAD_KEYS = ("connection", "read", "concurrency", "deadline_s", "cpu_us", "sleep_ms", "bytes")
# Environment keys that, when they differ, make a change suspect (pyperf's checked metadata).
MACHINE_KEYS = (("cpu_model", "CPUs"), ("kernel", "kernels"), ("python", "Pythons"))

Key = Tuple[str, str, str, str, str]


def _key(record: StrategyRecord) -> Key:
    level = json.dumps(record.level or {}, sort_keys=True)
    return (record.strategy, record.start_method or "", record.python, record.workload, level)


def _pct_change(before: float, after: float) -> str:
    if before == 0:
        return "n/a" if after == 0 else "new"
    return "%+.1f%%" % (100.0 * (after - before) / before)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _hangs(records: Sequence[StrategyRecord]) -> str:
    """Hang count and share, summed over the repetitions."""
    count = sum(r.requests.get("hang", 0) for r in records)
    total = sum(sum(r.requests.values()) for r in records)
    return "%d (%.3g%%)" % (count, 100.0 * count / total) if count else "0"


def _causes(records: Sequence[StrategyRecord]) -> str:
    """ " lost-task": the named cause(s) of the hangs, if any (harness.supervise.causes)."""
    causes = sorted({r.cause for r in records if r.cause})
    return " " + "/".join(causes) if causes else ""


def _hang_rate(records: Sequence[StrategyRecord]) -> float:
    total = sum(sum(r.requests.values()) for r in records)
    return sum(r.requests.get("hang", 0) for r in records) / total if total else 0.0


def _status(records: Sequence[StrategyRecord]) -> str:
    statuses = sorted({r.status for r in records})
    return statuses[0] if len(statuses) == 1 else "/".join(statuses)


def _row(a: Sequence[StrategyRecord], b: Sequence[StrategyRecord], name: str) -> Tuple[List[str], str]:
    """The table row and the significance of the throughput change."""
    rps_a, rps_b = [r.throughput_rps for r in a], [r.throughput_rps for r in b]
    p99_a = _mean([r.latency_us.get("p99", 0) for r in a])
    p99_b = _mean([r.latency_us.get("p99", 0) for r in b])
    status_a, status_b = _status(a), _status(b)
    comparison = significant(rps_a, rps_b)
    if comparison.p is None:
        verdict = ONE_REPETITION
    else:
        verdict = "%s (%s, n = %d + %d)" % (comparison.verdict, format_p(comparison.p), len(a), len(b))
    row = [
        name,
        status_a if status_a == status_b else "%s -> %s" % (status_a, status_b),
        "%.0f -> %.0f" % (_mean(rps_a), _mean(rps_b)),
        _pct_change(_mean(rps_a), _mean(rps_b)),
        "%.2f -> %.2f" % (p99_a / 1000.0, p99_b / 1000.0),
        _pct_change(p99_a, p99_b),
        "%s -> %s" % (_hangs(a) + _causes(a), _hangs(b) + _causes(b)),
        "%+.3g" % (100 * (_hang_rate(b) - _hang_rate(a))),
    ]
    return row, verdict


def _groups(run: RunRecord) -> Dict[Key, List[StrategyRecord]]:
    groups: Dict[Key, List[StrategyRecord]] = {}
    for record in run.strategies:
        groups.setdefault(_key(record), []).append(record)
    return groups


def compare_runs(baseline: RunRecord, candidate: RunRecord) -> str:
    before, after = _groups(baseline), _groups(candidate)
    every = list(baseline.strategies) + list(candidate.strategies)
    vary = varying([(r.start_method, r.python) for r in every])
    several_workloads = len({r.workload for r in every}) > 1
    table, verdicts = [], []
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key), after.get(key)
        either = (a or b or [])[0]
        name = case_name(either.strategy, either.start_method, either.python, vary)
        if several_workloads:
            name += " [%s]" % either.workload
        if either.level:
            name += " " + level_label(either.level)
        if a is None or b is None:
            table.append([name, "only in " + ("candidate" if a is None else "baseline"), "", "", "", "", "", ""])
            continue
        row, verdict = _row(a, b, name)
        verdicts.append(verdict)
        table.append(row)
    repeated = any(v != ONE_REPETITION for v in verdicts)
    headers = list(HEADERS)
    if repeated:  # a significance column only where there is one to give
        headers.append("throughput change")
        verdict_cells = iter(verdicts)
        for row in table:
            row.append(next(verdict_cells) if not row[1].startswith("only in ") else "")
    lines = [tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)]
    if verdicts and not repeated:
        lines.append("significance: %s (run both with --repeat 3 or more)." % ONE_REPETITION)
    lines.extend(_knees(baseline, candidate))
    warning = machine_warning(baseline, candidate)
    if warning:
        lines.append(warning)
    return "\n".join(lines)


def _knees(baseline: RunRecord, candidate: RunRecord) -> List[str]:
    before, after = by_key(baseline.knees), by_key(candidate.knees)
    if not before and not after:
        return []
    lines = ["", "knees:"]
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key), after.get(key)
        item = a or b
        assert item is not None  # every key comes from one of the two runs
        where = "%s [%s] %s sweep" % (item["case"], item.get("workload", "hello"), item["sweep"])
        lines.append("  %s: %s -> %s" % (where, _knee_value(a), _knee_value(b)))
    return lines


def _knee_value(item: Any) -> str:
    if item is None:
        return "not swept"
    return "none" if item.get("knee") is None else "%g" % item["knee"]


def machine_warning(baseline: RunRecord, candidate: RunRecord) -> str:
    """One line naming what differs between the two runs' machines, or ""."""
    found = []
    for key, plural in MACHINE_KEYS:
        a, b = baseline.environment.get(key), candidate.environment.get(key)
        if a != b:
            found.append("different %s (%s vs %s)" % (plural, a, b))
    return ("warning: %s; compare with care." % "; ".join(found)) if found else ""


def check_comparable(baseline: RunRecord, candidate: RunRecord) -> None:
    """UsageError naming the first workload setting the two runs differ in (keys either lacks are skipped)."""
    a, b = baseline.config.get("workloads"), candidate.config.get("workloads")
    if isinstance(a, dict) and isinstance(b, dict):  # schema 2: each named workload, as run
        common = [name for name in a if name in b]
        if not common:
            raise UsageError(
                "the two runs measured different workloads (%s in the baseline, %s in the candidate); "
                "compare runs of the same workload" % (", ".join(a) or "none", ", ".join(b) or "none")
            )
        for name in common:
            if a[name] != b[name]:
                raise UsageError(
                    "the two runs measured different workloads (%s: %s in the baseline, %s in the candidate); "
                    "compare runs of the same workload" % (name, a[name], b[name])
                )
        keys: Sequence[str] = ("deadline_s",)
    else:
        keys = WORKLOAD_KEYS
    for key in keys:
        if key in baseline.config and key in candidate.config and baseline.config[key] != candidate.config[key]:
            raise UsageError(
                "the two runs measured different workloads (%s %r in the baseline, %r in the candidate); "
                "compare runs of the same workload" % (key, baseline.config[key], candidate.config[key])
            )


def compare_files(baseline_path: str, candidate_path: str) -> int:
    try:
        baseline, candidate = read_run(baseline_path), read_run(candidate_path)
    except ResultsError as error:
        raise UsageError(str(error)) from None
    check_comparable(baseline, candidate)
    print(
        "baseline:  %s (%s)\ncandidate: %s (%s)\n"
        % (baseline_path, baseline.created, candidate_path, candidate.created)
    )
    print(compare_runs(baseline, candidate))
    sys.stdout.flush()
    return 0
