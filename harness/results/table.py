"""Tables for people: the run's terminal table, its Markdown twin, and `compare`.

One row per (strategy, start method, interpreter) case. The columns answer the product's
question in reading order: did it work (status, hang rate, errors), how fast (throughput),
at what tail (p50 ... max), at what cost (server CPU per 1,000 requests, peak RSS), and can the
row be trusted (client-bound). Long forensics go to the JSON; the table gets one phrase.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from .records import COMPLETED, ResultsError, RunRecord, StrategyRecord, read_run

HEADERS = ["strategy", "status", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "hangs", "errors", "cpu s/1k", "rss MB", "note"]


def _ms(record: StrategyRecord, key: str) -> str:
    value = record.latency_us.get(key) if record.latency_us else None
    return "-" if not value else "%.2f" % (value / 1000.0)


def _hangs(record: StrategyRecord) -> str:
    """Count and share: a 0.02% hang rate must not print as 0.0."""
    count = record.requests.get("hang", 0)
    return "%d (%.3g%%)" % (count, 100 * record.hang_rate) if count else "0"


def _errors(record: StrategyRecord) -> str:
    kinds = [(kind, count) for kind, count in record.requests.items() if kind not in ("ok", "hang") and count]
    return ", ".join("%s %d" % (kind, count) for kind, count in kinds) or "0"


def case_name(record: StrategyRecord, vary: Sequence[str] = ()) -> str:
    parts = [record.strategy]
    if "start_method" in vary and record.start_method:
        parts.append(record.start_method)
    if "python" in vary and record.python:
        parts.append("py" + record.python)
    return "/".join(parts)


def _varying(records: Sequence[StrategyRecord]) -> Tuple[str, ...]:
    vary = []
    if len({r.start_method for r in records if r.start_method}) > 1:
        vary.append("start_method")
    if len({r.python for r in records}) > 1:
        vary.append("python")
    return tuple(vary)


def _note(record: StrategyRecord) -> str:
    notes = []
    if record.client_bound:
        notes.append("client-bound")
    if record.partial:
        notes.append("partial")
    if record.stop and record.stop.get("ignored_sigterm"):
        notes.append("ignored SIGTERM, killed")
    if record.leaks:
        notes.append("LEAK: " + "; ".join(record.leaks))
    if record.stuck:
        notes.append("stuck: " + record.stuck)
    if record.status != COMPLETED and record.message:
        notes.append(record.message.splitlines()[0][:80])
    return "; ".join(notes)


def rows(records: Sequence[StrategyRecord]) -> List[List[str]]:
    vary = _varying(records)
    table = []
    for r in records:
        measured = r.status == COMPLETED or r.partial
        table.append(
            [
                case_name(r, vary),
                r.status,
                "%.0f" % r.throughput_rps if measured else "-",
                _ms(r, "p50"),
                _ms(r, "p90"),
                _ms(r, "p99"),
                _ms(r, "p999"),
                _ms(r, "max"),
                _hangs(r) if measured else "-",
                _errors(r) if measured else "-",
                "%.2f" % r.server_cpu_s_per_1k if r.server_cpu_s_per_1k is not None else "-",
                "%.0f" % r.server_peak_rss_mb if r.server_peak_rss_mb is not None else "-",
                _note(r),
            ]
        )
    return table


def terminal_table(records: Sequence[StrategyRecord]) -> str:
    return tabulate(rows(records), headers=HEADERS, tablefmt="simple", disable_numparse=True)


def markdown(run: RunRecord, command: str) -> str:
    env = run.environment
    lines = [
        "# hangbench run %s%s" % (run.created, " (partial)" if run.partial else ""),
        "",
        "Command: `%s`" % command,
        "",
        "Machine: %s, %s CPUs, %s, Python %s (harness)." % (env.get("cpu_model"), env.get("cpu_count"), env.get("os"), env.get("python")),
        "",
        tabulate(rows(run.strategies), headers=HEADERS, tablefmt="github", disable_numparse=True),
        "",
        "ok/s: complete 2xx responses per second of measurement. Latency of ok responses from an "
        "HdrHistogram. hang: no complete response within the deadline (%ss). cpu s/1k: server CPU "
        "seconds (whole process tree) per 1,000 requests. client-bound: the load generator, not "
        "the server, used a whole core." % run.config.get("deadline_s", "?"),
        "",
    ]
    return "\n".join(lines)


def _key(record: StrategyRecord) -> Tuple[str, str, str]:
    return (record.strategy, record.start_method or "", record.python)


def _pct_change(before: float, after: float) -> str:
    if before == 0:
        return "n/a" if after == 0 else "new"
    return "%+.1f%%" % (100.0 * (after - before) / before)


def compare_runs(baseline: RunRecord, candidate: RunRecord) -> str:
    before: Dict[Tuple[str, str, str], StrategyRecord] = {_key(r): r for r in baseline.strategies}
    after: Dict[Tuple[str, str, str], StrategyRecord] = {_key(r): r for r in candidate.strategies}
    vary = _varying(list(before.values()) + list(after.values()))
    table = []
    for key in list(before) + [k for k in after if k not in before]:
        a: Optional[StrategyRecord] = before.get(key)
        b: Optional[StrategyRecord] = after.get(key)
        name = case_name((a or b), vary)  # type: ignore[arg-type]
        if a is None or b is None:
            table.append([name, "only in " + ("candidate" if a is None else "baseline"), "", "", "", "", "", ""])
            continue
        p99_a, p99_b = a.latency_us.get("p99", 0), b.latency_us.get("p99", 0)
        table.append(
            [
                name,
                a.status if a.status == b.status else "%s -> %s" % (a.status, b.status),
                "%.0f -> %.0f" % (a.throughput_rps, b.throughput_rps),
                _pct_change(a.throughput_rps, b.throughput_rps),
                "%.2f -> %.2f" % (p99_a / 1000.0, p99_b / 1000.0),
                _pct_change(p99_a, p99_b),
                "%.1f -> %.1f" % (100 * a.hang_rate, 100 * b.hang_rate),
                "%+.1f" % (100 * (b.hang_rate - a.hang_rate)),
            ]
        )
    headers = ["strategy", "status", "ok/s", "change", "p99 ms", "change", "hang %", "change (pts)"]
    notes = []
    if baseline.environment.get("cpu_model") != candidate.environment.get("cpu_model"):
        notes.append("note: the two runs were made on different CPUs; compare with care.")
    return "\n".join([tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)] + notes)


def compare_files(baseline_path: str, candidate_path: str) -> int:
    from ..cli import UsageError

    try:
        baseline, candidate = read_run(baseline_path), read_run(candidate_path)
    except ResultsError as error:
        raise UsageError(str(error))
    print("baseline:  %s (%s)\ncandidate: %s (%s)\n" % (baseline_path, baseline.created, candidate_path, candidate.created))
    print(compare_runs(baseline, candidate))
    sys.stdout.flush()
    return 0
