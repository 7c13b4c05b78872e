"""Tables for people: the run's terminal table and its Markdown twin.

One row per (strategy, start method, interpreter) case. The columns answer the product's
question in reading order: did it work (status, hangs, errors), how fast (throughput), at what
tail (p50 ... max), at what cost (server CPU per 1,000 requests, peak RSS). The terminal table
fits 120 columns: notes (client-bound, leaks, where it was stuck, why it failed) go to numbered
lines under it, keyed by row number, and if the rows are still too wide the least needed columns
are left out. The Markdown table has no width to fit and keeps its notes in a column. Long
forensics go to the JSON; a table gets one phrase.
"""

from __future__ import annotations

import textwrap
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from ..errors import MEASURED
from .analysis import text as analysis_text
from .records import RunRecord, StrategyRecord

WIDTH = 120
# The load generator, not the server, was the bottleneck: what to try.
RATE_KEPT = 0.99  # open loop: a row whose achieved rate is below this share of the intended one says so
CLIENT_BOUND_HINT = "client-bound: try --client-procs 2 or more, pinning (taskset), or a faster client (wrk)"
UVLOOP_HINT = "--engine asyncio with uvloop installed (if not so already)"  # the fastest engine here

Column = Tuple[str, Callable[[StrategyRecord], str]]


def _ms_value(value: Optional[int]) -> str:
    if not value:
        return "-"
    ms = value / 1000.0
    return "%.2f" % ms if ms < 10 else ("%.1f" % ms if ms < 100 else "%.0f" % ms)


def _ms(key: str) -> Callable[[StrategyRecord], str]:
    return lambda r: _ms_value(r.latency_us.get(key)) if r.latency_us else "-"


def measured(record: StrategyRecord) -> bool:
    return record.status in MEASURED or record.partial


def hangs(record: StrategyRecord) -> str:
    """Count and share: a 0.02% hang rate must not print as 0.0."""
    count = record.requests.get("hang", 0)
    return "%d (%.3g%%)" % (count, 100 * record.hang_rate) if count else "0"


def _error_kinds(record: StrategyRecord) -> List[Tuple[str, int]]:
    return [(kind, count) for kind, count in record.requests.items() if kind not in ("ok", "hang") and count]


def _errors_cell(record: StrategyRecord) -> str:
    kinds = _error_kinds(record)
    if len(kinds) > 1:
        return str(sum(count for _kind, count in kinds))  # the breakdown goes to the notes
    return ", ".join("%s %d" % kind for kind in kinds) or "0"


def _numbers(cell: Callable[[StrategyRecord], str]) -> Callable[[StrategyRecord], str]:
    return lambda r: cell(r) if measured(r) else "-"


# (header, cell) in reading order; the terminal table drops OPTIONAL ones, in this order, to fit.
# Latency columns are milliseconds (LEGEND says so under the table: short headers fit 120 columns).
COLUMNS: List[Column] = [
    ("status", lambda r: r.status),
    ("ok/s", _numbers(lambda r: "%.0f" % r.throughput_rps)),
    ("p50", _ms("p50")),
    ("p90", _ms("p90")),
    ("p99", _ms("p99")),
    ("p99.9", _ms("p999")),
    ("max", _ms("max")),
    ("hangs", _numbers(hangs)),
    ("errors", _numbers(_errors_cell)),
    ("cpu/1k", lambda r: "%.2f" % r.server_cpu_s_per_1k if r.server_cpu_s_per_1k is not None else "-"),
    ("rss MB", lambda r: "%.0f" % r.server_peak_rss_mb if r.server_peak_rss_mb is not None else "-"),
]
LEGEND = (
    "latency of ok responses in ms; hangs: no complete response within the deadline; "
    "cpu/1k: server CPU s per 1,000 requests; rss MB: server's peak memory"
)
OPTIONAL = ("p90", "rss MB", "cpu/1k", "p50", "max", "p99.9")


def case_name(strategy: str, start_method: Optional[str], python: str, vary: Sequence[str] = ()) -> str:
    """How a case is named wherever it is shown: its strategy, plus whatever varies in the run."""
    parts = [strategy]
    if "start_method" in vary and start_method:
        parts.append(start_method)
    if "python" in vary and python:
        parts.append("py" + python)
    return "/".join(parts)


def varying(cases: Sequence[Tuple[Optional[str], str]]) -> Tuple[str, ...]:
    """Which of (start method, python version) differ between the cases of a run."""
    vary = []
    if len({method for method, _python in cases if method}) > 1:
        vary.append("start_method")
    if len({python for _method, python in cases}) > 1:
        vary.append("python")
    return tuple(vary)


def record_names(records: Sequence[StrategyRecord]) -> List[str]:
    """Case names, then the workload, level and repetition where the run has more than one."""
    vary = varying([(r.start_method, r.python) for r in records])
    names = [case_name(r.strategy, r.start_method, r.python, vary) for r in records]
    several_workloads = len({r.workload for r in records}) > 1
    repeated = len({r.repetition for r in records}) > 1
    for i, r in enumerate(records):
        if several_workloads:
            names[i] += " [%s]" % r.workload
        if r.level:
            names[i] += " " + ",".join("%s=%g" % item for item in sorted(r.level.items()))
        if repeated:
            names[i] += " #%d" % (r.repetition + 1)
    return names


def notes(record: StrategyRecord) -> List[str]:
    out = []
    intended = record.intended_rate_rps
    achieved = record.achieved_rate_rps or 0.0
    if intended and achieved < RATE_KEPT * intended:
        if record.load_model != "open":  # a paced closed loop
            why = "paced: a closed loop waits for each response, so a slower server is sent less"
        elif record.client_bound:
            why = "the client could not keep the schedule"
        else:
            why = "every connection was busy: the server is the limit, or -c is too small for the rate"
        out.append("achieved %.0f of %g req/s intended (%s)" % (achieved, intended, why))
    if record.client_bound:
        out.append(client_bound_hint(record))
    if record.partial:
        out.append("partial")
    if record.stop and record.stop.get("ignored_sigterm"):
        out.append("ignored SIGTERM, killed")
    if record.leaks:
        out.append("LEAK: " + "; ".join(record.leaks))
    if record.cause:
        out.append("cause: %s%s" % (record.cause, milestones_note(record.hang_milestones)))
    if record.stuck:
        out.append("stuck: " + record.stuck)
    kinds = _error_kinds(record)
    if len(kinds) > 1 and measured(record):
        out.append("errors: " + ", ".join("%s %d" % kind for kind in kinds))
    if record.status not in MEASURED and record.message:
        out.append(record.message.splitlines()[0][:200])
    return out


def client_bound_hint(record: StrategyRecord) -> str:
    """What to try for a client-bound row, leaving out what the row already used: more client
    processes (the number it ran with is recorded), --pin, the fastest engine, then wrk."""
    tries = ["--client-procs %d or more (it ran %d)" % (record.client_procs + 1, record.client_procs)]
    if not record.pinned:
        tries.append("--pin (server and client on separate CPUs)")
    tries.append(UVLOOP_HINT)
    return "client-bound: try %s, or a faster client (wrk, --url)" % ", ".join(tries)


def milestones_note(milestones: Dict[str, int]) -> str:
    """ " (hung: 7 request sent, no byte back)": hung requests grouped by the last milestone reached."""
    if not milestones:
        return ""
    ordered = sorted(milestones.items(), key=lambda item: -item[1])
    return " (hung: %s)" % ", ".join("%d %s" % (count, milestone) for milestone, count in ordered)


def rows(records: Sequence[StrategyRecord], columns: Sequence[Column] = COLUMNS) -> List[List[str]]:
    return [
        [name] + [cell(r) for _header, cell in columns] for name, r in zip(record_names(records), records, strict=True)
    ]


def terminal_table(records: Sequence[StrategyRecord], width: int = WIDTH) -> str:
    """The table, then one line (wrapped) per row that has notes: `[n] note; note`."""
    columns = list(COLUMNS)
    numbered = [[str(i), *row] for i, row in enumerate(rows(records, columns), 1)]
    text = _simple(numbered, columns)
    for header in OPTIONAL:
        if _widest(text) <= width:
            break
        columns = [c for c in columns if c[0] != header]
        numbered = [[str(i), *row] for i, row in enumerate(rows(records, columns), 1)]
        text = _simple(numbered, columns)
    lines = [text, ""]
    for i, found in enumerate((notes(r) for r in records), 1):
        if found:
            lines.extend(_wrap("[%d] %s" % (i, "; ".join(found)), width))
    lines.extend(_wrap(LEGEND, width))
    return "\n".join(lines)


def _wrap(text: str, width: int) -> List[str]:
    return textwrap.wrap(text, width, subsequent_indent="    ", break_long_words=True, break_on_hyphens=False)


def _simple(table: List[List[str]], columns: Sequence[Column]) -> str:
    """tabulate's "simple" layout, without the padding it adds to every header (which alone
    would take 30 of the 120 columns)."""
    headers = ["#", "strategy"] + [header for header, _cell in columns]
    widths = [max(len(row[i]) for row in [headers, *table]) for i in range(len(headers))]
    lines = [headers, ["-" * width for width in widths], *table]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in lines
    )


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def markdown(run: RunRecord, command: str) -> str:
    env = run.environment
    table = [[*row, "; ".join(notes(r))] for row, r in zip(rows(run.strategies), run.strategies, strict=True)]
    headers = ["strategy"] + [header for header, _cell in COLUMNS] + ["note"]
    lines = [
        "# hangbench run %s%s" % (run.created, " (partial)" if run.partial else ""),
        "",
        "Command: `%s`" % command,
        "",
        "Machine: %s, %s CPUs, %s, Python %s (harness)."
        % (env.get("cpu_model"), env.get("cpu_count"), env.get("os"), env.get("python")),
        "",
        tabulate(table, headers=headers, tablefmt="github", disable_numparse=True),
        "",
        "ok/s: complete 2xx responses per second of measurement. Latency of ok responses from an "
        "HdrHistogram, in ms. hang: no complete response within the deadline (%ss). cpu/1k: server CPU "
        "seconds (whole process tree) per 1,000 requests. no-response: not one request got a "
        "response. client-bound: the load generator, not the server, was the bottleneck."
        % run.config.get("deadline_s", "?"),
        "",
    ]
    after = analysis_text(run)
    if after:
        lines += ["```", after, "```", ""]
    return "\n".join(lines)
