"""The report page: one self-contained HTML file (inline CSS and SVG, no network, printable).

The page is a `string.Template` (stdlib: the layout is simple enough not to need jinja2) whose
body is assembled from `sections.py` fragments and the figures of `plots.plan`, in reading
order: verdict, summary table, compare deltas, plots per workload, notes and forensics,
environment. Without matplotlib the tables still render, with one line saying how to get plots.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from string import Template

from harness.results.jsonio import write_text_atomic

from . import plots, sections
from .data import Run, load_runs
from .sections import esc

CSS = """
:root { --fg: #1d1d1f; --muted: #666; --line: #ddd; --bad: #b00020; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.6rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { font-size: 1.25rem; margin: 2rem 0 .6rem;
     border-bottom: 2px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1.05rem; } h4 { margin: .4rem 0; }
.sub, .note { color: var(--muted); } nav a { margin-right: .9rem; } a { color: var(--accent); }
table { border-collapse: collapse; font-size: .88rem; margin: .4rem 0 1rem; }
th, td { padding: .28rem .55rem; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f4f5f7; position: sticky; top: 0; }
th.text, td.text { text-align: left; }
table.deltas td:last-child, table.summary td:last-child { white-space: normal; min-width: 9rem; }
td a { white-space: nowrap; } .scroll { overflow-x: auto; }
table.summary td.text:nth-last-child(2) { white-space: normal; }
.case { font-weight: 600; } .bad, .status-mixed, [class^="status-"]:not(.status-completed) { color: var(--bad); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .9rem; margin: .3rem 0; font-size: .88rem; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
figure.plot { margin: 1rem 0 1.6rem; break-inside: avoid; page-break-inside: avoid; }
figure.plot figcaption { font-weight: 600; margin-bottom: .3rem; }
figure.plot svg { width: 100%; height: auto; max-width: 1000px; display: block; }
details { margin: .4rem 0; } details > summary { cursor: pointer; }
details.record { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .8rem; }
details.record > summary { font-weight: 600; }
dl.notes dt { font-weight: 600; margin-top: .4rem; } dl.notes dd { margin: 0 0 0 1rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .8rem; margin: .2rem 0;
      background: #f7f7f9; padding: .35rem .5rem; border-radius: 4px; }
.forensics ul { list-style: none; padding-left: .6rem; }
.verdict { border-left: 4px solid var(--accent); padding: .2rem .9rem; margin: .6rem 0; background: #f6f9fd; }
@media (max-width: 800px) { .cols { grid-template-columns: 1fr; } }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; } nav { display: none; }
  th { position: static; } .scroll { overflow: visible; } h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  figure.plot svg { max-width: 100%; }
}
@page { size: A4; margin: 14mm; }
"""

# Open the notes when printing (paper cannot click); forensics stay as they are.
SCRIPT = """
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details.print-open").forEach(function (d) { d.open = true; });
});
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header><h1>$title</h1><p class="sub">$subtitle</p></header>
<nav>$nav</nav>
$body
<footer class="note"><p>Made by <code>python -m harness report</code> on $generated.
Latency: ok responses only, from each record's HdrHistogram (3 significant digits).
Hangs: requests with no complete response within the deadline.</p></footer>
<script>$script</script>
</body>
</html>
""")


def _section(anchor: str, title: str, content: str) -> tuple[str, str]:
    return anchor, '<section id="%s"><h2>%s</h2>%s</section>' % (anchor, esc(title), content)


def _plots_html(runs: Sequence[Run]) -> list[tuple[str, str]]:
    specs = plots.plan(runs)
    if not specs:
        return []
    if not plots.available():
        return [_section("plots", "Plots", '<p class="note">%s</p>' % esc(plots.INSTALL_HINT))]
    out = []
    workloads = list(dict.fromkeys(spec.workload for spec in specs))
    number = 0
    for workload in workloads:
        shown: list[str] = []
        collapsed: list[str] = []
        for spec in (s for s in specs if s.workload == workload):
            number += 1
            figure = spec.build()
            svg = plots.to_svg(figure, "f%d" % number)
            html = '<figure class="plot" id="plot-%s"><figcaption>%s</figcaption>%s</figure>' % (
                esc(spec.slug),
                esc(spec.title),
                svg,
            )
            (collapsed if spec.collapsed else shown).append(html)
        if collapsed:
            shown.append(
                "<details><summary>%d more plots: over time, per level</summary>%s</details>"
                % (len(collapsed), "".join(collapsed))
            )
        title = "Plots" if len(workloads) == 1 else "Plots: %s" % workload
        out.append(_section("plots-" + "".join(c if c.isalnum() else "-" for c in workload), title, "".join(shown)))
    return out


def render(runs: Sequence[Run]) -> str:
    """The whole page for one file, or a comparison of several (the first is the baseline)."""
    parts: list[tuple[str, str]] = []
    verdict = sections.verdict(runs)
    if verdict:
        parts.append(_section("verdict", "Verdict", verdict))
    parts.append(_section("summary", "Summary", sections.summary_table(runs)))
    if len(runs) > 1:
        parts.append(_section("compare", "Changes from the baseline", sections.deltas_table(runs)))
    parts.extend(_plots_html(runs))
    parts.append(_section("notes", "Notes and hang forensics", sections.details(runs)))
    parts.append(_section("environment", "Environment and configuration", sections.environment(runs)))
    nav = " ".join('<a href="#%s">%s</a>' % (anchor, esc(anchor.split("-", 1)[0])) for anchor, _ in parts)
    names = ", ".join(run.source + (" (partial)" if run.partial else "") for run in runs)
    title = "hangbench: " + (runs[0].source if len(runs) == 1 else "comparison of %d runs" % len(runs))
    return PAGE.substitute(
        title=esc(title),
        subtitle=esc("%s · created %s" % (names, ", ".join(sorted({run.created for run in runs})))),
        nav=nav,
        body="\n".join(html for _, html in parts),
        css=CSS,
        script=SCRIPT,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_html(paths: Sequence[str | Path], out: Path) -> None:
    """Read the results files and write the report page to `out` (atomically)."""
    write_text_atomic(Path(out), render(load_runs(paths)))
