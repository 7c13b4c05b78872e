"""CSV export: one row per record (file x case x workload x level x repetition), for spreadsheets
and notebooks (`csv.DictReader`, `pandas.read_csv`).

RFC 4180 CSV, UTF-8, a header row, comma-separated; text with commas, quotes or newlines is
quoted; a missing value (no percentile without an ok response, no rate in a closed-loop run)
is an empty cell, so pandas reads it as NaN. Latencies are integer microseconds, as in the
JSON, so no precision is lost. Columns (also in docs/report.md):

- file: the results file's stem; created: its UTC start stamp
- case: the table's case name; strategy, start_method, python
- workload; level_kind ("concurrency", "rate" or empty); level_value; repetition (0-based)
- status; partial (true/false)
- load_model ("closed" or "open"); intended_rate_rps, achieved_rate_rps (open loop only)
- elapsed_s; throughput_rps (ok responses per second); hang_rate; error_rate (shares, 0-1)
- requests: all outcomes; ok, hang, refused, reset, closed, malformed, http_error: counts
- p50_us, p90_us, p99_us, p999_us, max_us: latency of ok responses (from the intended start
  in open loop); service_p50_us, service_p99_us: from the actual send (open loop only)
- client_bound (true/false); server_cpu_s_per_1k; server_peak_rss_mb
- stuck: where a hung server was stuck; leaks: "; "-joined; message: why a case failed
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.results.jsonio import write_text_atomic

from .data import OUTCOME_KINDS, Record, Run, load_runs

LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max")
COLUMNS = (
    ["file", "created", "case", "strategy", "start_method", "python", "workload", "level_kind", "level_value"]
    + ["repetition", "status", "partial", "load_model", "intended_rate_rps", "achieved_rate_rps", "elapsed_s"]
    + ["throughput_rps", "hang_rate", "error_rate", "requests", *OUTCOME_KINDS]
    + ["%s_us" % key for key in LATENCY_KEYS]
    + ["service_p50_us", "service_p99_us", "client_bound", "server_cpu_s_per_1k", "server_peak_rss_mb"]
    + ["stuck", "leaks", "message"]
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def row(run: Run, record: Record) -> dict[str, str]:
    level_kind, level_value = (record.level[0][0], record.level[0][1]) if record.level else (None, None)
    latency = {"%s_us" % key: record.latency_us.get(key) or None for key in LATENCY_KEYS}
    values: dict[str, Any] = {
        "file": run.source,
        "created": run.created,
        "case": record.case,
        "strategy": record.strategy,
        "start_method": record.start_method,
        "python": record.python,
        "workload": record.workload,
        "level_kind": level_kind,
        "level_value": level_value,
        "repetition": record.repetition,
        "status": record.status,
        "partial": record.partial,
        "load_model": record.load_model,
        "intended_rate_rps": record.intended_rate_rps,
        "achieved_rate_rps": record.achieved_rate_rps,
        "elapsed_s": record.elapsed_s,
        "throughput_rps": record.throughput_rps,
        "hang_rate": record.hang_rate,
        "error_rate": record.error_rate,
        "requests": sum(record.requests.values()),
        **{kind: record.requests.get(kind, 0) for kind in OUTCOME_KINDS},
        **latency,
        "service_p50_us": record.service_latency_us.get("p50") or None,
        "service_p99_us": record.service_latency_us.get("p99") or None,
        "client_bound": record.client_bound,
        "server_cpu_s_per_1k": record.server_cpu_s_per_1k,
        "server_peak_rss_mb": record.server_peak_rss_mb,
        "stuck": record.stuck,
        "leaks": "; ".join(record.leaks) or None,
        "message": record.message,
    }
    return {name: _cell(values[name]) for name in COLUMNS}


def render_csv(runs: Sequence[Run]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        for record in run.records:
            writer.writerow(row(run, record))
    return buffer.getvalue()


def write_csv(paths: Sequence[str | Path], out: Path) -> None:
    """Read the results files and write one CSV row per record to `out` (atomically)."""
    write_text_atomic(Path(out), render_csv(load_runs(paths)))
