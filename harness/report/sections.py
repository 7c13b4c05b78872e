"""HTML fragments of the report: environment, summary table, verdict, compare deltas, notes.

Every string that comes from a results file (strategy names, server messages, stack frames,
plugin text) goes through `esc` (html.escape) before it reaches the page: a plugin or a server
can put anything in those fields. The summary table stays narrow on purpose: long notes are
tags linking to a per-record details section below it.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from .compare import Delta, deltas
from .data import Record, Run, level_label, table_rows
from .forensics import forensics_html

ENV_KEYS = ("python", "implementation", "os", "cpu_model", "cpu_count", "loadavg_at_start", "git_commit")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(record: Record) -> str:
    return "rec-%s-%d" % ("".join(c if c.isalnum() else "-" for c in record.source), record.index)


TEXT_COLUMNS = ("case", "notes", "ok/s significance", "file", "vs", "workload", "status", "errors")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller): some hold links. Numbers align right,
    text columns left."""
    kinds = ['class="text"' if h in TEXT_COLUMNS else 'class="num"' for h in headers]
    head = "".join("<th %s>%s</th>" % (k, esc(h)) for k, h in zip(kinds, headers, strict=True))
    body = "".join(
        "<tr>%s</tr>" % "".join("<td %s>%s</td>" % (k, cell) for k, cell in zip(kinds, row, strict=True))
        for row in rows
    )
    # A wide table scrolls on its own rather than pushing the page sideways.
    return '<div class="scroll"><table class="%s"><thead><tr>%s</tr></thead><tbody>%s</tbody></table></div>' % (
        cls,
        head,
        body,
    )


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return '<dl class="kv">%s</dl>' % "".join("<dt>%s</dt><dd>%s</dd>" % (esc(k), esc(_plain(v))) for k, v in pairs)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return "%g" % value
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join("%s %s" % (k, _plain(v)) for k, v in value.items() if v is not None)
    return "-" if value is None else str(value)


def environment(runs: Sequence[Run]) -> str:
    parts = []
    for run in runs:
        env = run.environment
        config = {k: v for k, v in run.config.items() if v not in (None, [], "", {})}
        head = "<h3>%s</h3>" % esc(run.source) if len(runs) > 1 else ""
        created = [
            ("created", run.created),
            ("schema", run.schema_version),
            ("partial", "yes" if run.partial else "no"),
        ]
        parts.append(
            '%s<div class="cols"><div><h4>Environment</h4>%s</div><div><h4>Configuration</h4>%s</div></div>'
            "<details><summary>packages</summary>%s</details>"
            % (
                head,
                _kv(created + [(k, env.get(k)) for k in ENV_KEYS]),
                _kv(config.items()),
                _kv(_dict_items(env.get("packages"))),
            )
        )
    return "".join(parts)


def _dict_items(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


# --- the summary table ------------------------------------------------------------------------


def _ms(values_us: Sequence[int]) -> str:
    values = [v for v in values_us if v]
    return "%.2f" % (statistics.fmean(values) / 1000.0) if values else "-"


def _rate(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return "%.0f" % values[0]
    return "%.0f&nbsp;±&nbsp;%.0f" % (statistics.fmean(values), statistics.stdev(values))


def tags(record: Record) -> list[tuple[str, str]]:
    """(short tag, full text) for each note of a record; the table shows tags, details the text."""
    out = []
    if record.client_bound:
        out.append(("client-bound", "the load generator, not the server, was the bottleneck: a lower bound"))
    if record.partial:
        out.append(("partial", "the measurement was cut short"))
    if record.ignored_sigterm:
        out.append(("ignored SIGTERM", "the server ignored SIGTERM and was killed"))
    if record.leaks:
        out.append(("leak", "; ".join(record.leaks)))
    if record.cause:
        out.append(("cause: " + record.cause, "\n".join((record.cause, *record.cause_evidence))))
    if record.stuck:
        out.append(("stuck", record.stuck))
    if record.status != "completed" and record.message:
        out.append(("message", record.message))
    if record.broken:
        out.append(("broken", record.broken))  # the strategy's own statement: misbehaves on purpose
    return out


def summary_table(runs: Sequence[Run]) -> str:
    rows = table_rows(runs)
    compare = len(runs) > 1
    many_workloads = len({r.workload for r in rows}) > 1
    levels = any(r.level for r in rows)
    repeated = any(len(r.records) > 1 for r in rows)
    headers = ["case"] + (["file"] if compare else []) + (["workload"] if many_workloads else [])
    headers += (["level"] if levels else []) + (["n"] if repeated else [])
    headers += ["status", "ok/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "hangs", "errors", "notes"]
    body = []
    for row in rows:
        records = row.records
        measured = [r for r in records if r.measured]
        statuses = sorted({r.status for r in records})
        hangs = sum(r.requests.get("hang", 0) for r in measured)
        total = sum(sum(r.requests.values()) for r in measured)
        errors: dict[str, int] = {}
        for r in measured:
            for kind, count in r.requests.items():
                if kind not in ("ok", "hang") and count:
                    errors[kind] = errors.get(kind, 0) + count
        notes = []
        for r in records:
            for tag, _ in tags(r):
                link = '<a href="#%s">%s</a>' % (anchor(r), esc(tag))
                if link not in notes:
                    notes.append(link)
        cells = ['<span class="case">%s</span>' % esc(row.case)]
        cells += [esc(row.source)] if compare else []
        cells += [esc(row.workload)] if many_workloads else []
        cells += [esc(level_label(row.level))] if levels else []
        cells += [str(len(records))] if repeated else []
        cells += [
            '<span class="status-%s">%s</span>'
            % (esc(statuses[0]) if len(statuses) == 1 else "mixed", esc(", ".join(statuses))),
            _rate([r.throughput_rps for r in measured]),
            _ms([r.latency_us.get("p50", 0) for r in measured]),
            _ms([r.latency_us.get("p99", 0) for r in measured]),
            _ms([r.latency_us.get("p999", 0) for r in measured]),
            _ms([max((r.latency_us.get("max", 0) for r in measured), default=0)]),
            ('<span class="bad">%d (%.3g%%)</span>' % (hangs, 100.0 * hangs / total) if hangs and total else "0")
            if measured
            else "-",
            (", ".join("%s&nbsp;%d" % (esc(k), n) for k, n in errors.items()) or "0") if measured else "-",
            " ".join(notes),
        ]
        body.append(cells)
    if not any(cells[-1] for cells in body):  # no notes anywhere: no empty column
        headers, body = headers[:-1], [cells[:-1] for cells in body]
    return table(headers, body, "summary")


# --- verdict, deltas --------------------------------------------------------------------------


def verdict(runs: Sequence[Run]) -> str:
    parts = []
    for run in runs:
        if not run.verdict:
            continue
        for item in run.verdict.get("workloads") or ():
            if not isinstance(item, dict):
                continue
            ratio = item.get("ratio_to_runner_up")
            lines = [
                ("best", item.get("best") or "none"),
                ("tied with the best", ", ".join(str(c) for c in item.get("tied") or ()) or "none"),
                ("runner-up", item.get("runner_up") or "none"),
                ("ratio to runner-up", "%.2f times" % ratio if isinstance(ratio, (int, float)) else "-"),
                ("significance", item.get("significance") or "-"),
            ]
            excluded = "".join(
                "<li><b>%s</b> (%s): %s</li>" % (esc(e.get("case")), esc(e.get("status")), esc(e.get("why")))
                for e in item.get("excluded") or ()
                if isinstance(e, dict)
            )
            title = "%s%s" % (item.get("workload", ""), " (%s)" % run.source if len(runs) > 1 else "")
            parts.append(
                '<div class="verdict"><h3>%s</h3>%s%s</div>'
                % (esc(title), _kv(lines), "<p>Excluded:</p><ul>%s</ul>" % excluded if excluded else "")
            )
    return "".join(parts)


def _change(value: float | None) -> str:
    return "n/a" if value is None else "%+.1f%%" % (100.0 * value)


def deltas_table(runs: Sequence[Run]) -> str:
    found: list[Delta] = deltas(runs)
    if not found:
        return "<p>No case appears in both the baseline and another file.</p>"
    where = len({(d.workload, d.level) for d in found}) > 1
    rows = [
        [esc(d.case)]
        + ([esc(d.workload + (" " + level_label(d.level) if d.level else ""))] if where else [])
        + [
            esc(d.candidate),
            "%.0f → %.0f" % d.throughput,
            _change(d.throughput_change),
            "%.2f → %.2f" % d.p99_ms,
            _change(d.p99_change),
            "%.3g%% → %.3g%%" % (100 * d.hang_rate[0], 100 * d.hang_rate[1]),
            esc(d.significance),
        ]
        for d in found
    ]
    headers = (
        ["case"]
        + (["workload"] if where else [])
        + ["vs", "ok/s", "change", "p99 ms", "change", "hangs", "ok/s significance"]
    )
    return "<p>Baseline: <b>%s</b>.</p>%s" % (esc(runs[0].source), table(headers, rows, "deltas"))


# --- per-record details and forensics ---------------------------------------------------------


def details(runs: Sequence[Run]) -> str:
    parts = []
    many_workloads = len({r.workload for run in runs for r in run.records}) > 1
    for run in runs:
        for record in run.records:
            notes = tags(record)
            if not notes and not record.forensics:
                continue
            where = [record.case, record.workload if many_workloads else "", level_label(record.level)]
            if any(len(r.records) > 1 for r in table_rows([run]) if r.case == record.case):
                where.append("repetition %d" % record.repetition)
            if len(runs) > 1:
                where.append(run.source)
            title = " · ".join(w for w in where if w)
            items = "".join("<dt>%s</dt><dd><pre>%s</pre></dd>" % (esc(tag), esc(text)) for tag, text in notes)
            open_attr = " open" if record.stuck or record.status != "completed" else ""
            parts.append(
                '<details class="record print-open" id="%s"%s><summary>%s</summary>'
                % (anchor(record), open_attr, esc(title))
                + '<dl class="notes">%s</dl>%s</details>'
                % (items, forensics_html(record.forensics, record.stuck, record.timelines))
            )
    return "".join(parts) or "<p>No notes: every case completed without hangs, leaks or warnings.</p>"
