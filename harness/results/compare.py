"""`python -m harness compare A.json B.json`: the change between two saved runs.

Records are matched by (strategy, start method, python); the columns are the throughput, p99
and hang changes (hangs as count and share: one hang in 30,000 requests is `1 (0.00333%)`, not
`0.0`). Two runs of different workloads (what each request asks for, how it is read, how many
are in flight, what counts as a hang) do not compare: a content-length run against an eof run
would print "p99 -100 %". That, a file that cannot be read, or one that is not a results file is
the user's mistake: one sentence, exit status 2 (`UsageError`).
"""

from __future__ import annotations

import sys
from typing import Dict, List, Tuple

from tabulate import tabulate

from ..errors import UsageError
from .jsonio import read_run
from .records import ResultsError, RunRecord, StrategyRecord
from .table import case_name, hangs, varying

HEADERS = ["strategy", "status", "ok/s", "change", "p99 ms", "change", "hangs", "hang rate change (pts)"]
# Config keys that define the workload; runs that differ in one of them measure different things.
WORKLOAD_KEYS = ("connection", "read", "concurrency", "deadline_s", "cpu_us", "sleep_ms", "bytes")


def _key(record: StrategyRecord) -> Tuple[str, str, str]:
    return (record.strategy, record.start_method or "", record.python)


def _pct_change(before: float, after: float) -> str:
    if before == 0:
        return "n/a" if after == 0 else "new"
    return "%+.1f%%" % (100.0 * (after - before) / before)


def _row(a: StrategyRecord, b: StrategyRecord, name: str) -> List[str]:
    p99_a, p99_b = a.latency_us.get("p99", 0), b.latency_us.get("p99", 0)
    return [
        name,
        a.status if a.status == b.status else "%s -> %s" % (a.status, b.status),
        "%.0f -> %.0f" % (a.throughput_rps, b.throughput_rps),
        _pct_change(a.throughput_rps, b.throughput_rps),
        "%.2f -> %.2f" % (p99_a / 1000.0, p99_b / 1000.0),
        _pct_change(p99_a, p99_b),
        "%s -> %s" % (hangs(a), hangs(b)),
        "%+.3g" % (100 * (b.hang_rate - a.hang_rate)),
    ]


def compare_runs(baseline: RunRecord, candidate: RunRecord) -> str:
    before: Dict[Tuple[str, str, str], StrategyRecord] = {_key(r): r for r in baseline.strategies}
    after: Dict[Tuple[str, str, str], StrategyRecord] = {_key(r): r for r in candidate.strategies}
    every = list(before.values()) + list(after.values())
    vary = varying([(r.start_method, r.python) for r in every])
    table = []
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key), after.get(key)
        either = a if a is not None else b
        assert either is not None  # every key comes from one of the two runs
        name = case_name(either.strategy, either.start_method, either.python, vary)
        if a is None or b is None:
            table.append([name, "only in " + ("candidate" if a is None else "baseline"), "", "", "", "", "", ""])
            continue
        table.append(_row(a, b, name))
    notes = []
    if baseline.environment.get("cpu_model") != candidate.environment.get("cpu_model"):
        notes.append("note: the two runs were made on different CPUs; compare with care.")
    return "\n".join([tabulate(table, headers=HEADERS, tablefmt="simple", disable_numparse=True), *notes])


def check_comparable(baseline: RunRecord, candidate: RunRecord) -> None:
    """UsageError naming the first workload setting the two runs differ in (keys either lacks are skipped)."""
    for key in WORKLOAD_KEYS:
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
