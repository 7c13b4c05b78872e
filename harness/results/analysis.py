"""What a run's records add up to: summaries over repetitions, knees of sweeps, the verdict.

Computed from the strategy records alone (so a results file can always be re-analysed, and
`verdict`/`compare` recompute the same figures from any file), and stored in the RunRecord as
`summaries`, `knees` and `verdict` (results/README.md). `text` is what the terminal prints
under the main table: a knee line per swept case, then the verdict table when the run has more
than one case or workload.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

from .knee import DEFAULT_SLO_P99_MS, knee_lines, knees
from .records import RunRecord
from .stats import case_names, summarize
from .verdict import format_verdict, verdict


def analysed(run: RunRecord, slo_p99_ms: float = DEFAULT_SLO_P99_MS) -> RunRecord:
    """`run` with its summaries, knees and verdict computed from its strategy records.

    The verdict ranks throughput, which only means something in closed loop: in open loop every
    case that keeps up sends exactly the rate asked for, and the knees answer the question
    instead. So the verdict covers the closed-loop summaries, and is null when there are none."""
    records = run.strategies
    summaries = summarize(records)
    broken: Dict[str, object] = {
        name: record.broken for name, record in zip(case_names(records), records, strict=True) if record.broken
    }
    open_loop = {
        (name, r.workload) for name, r in zip(case_names(records), records, strict=True) if r.load_model == "open"
    }
    closed = [s for s in summaries if (s["case"], s["workload"]) not in open_loop]
    return replace(
        run,
        summaries=summaries,
        knees=knees(records, slo_p99_ms),
        verdict=verdict(closed, broken) if closed else None,
    )


def text(run: RunRecord) -> str:
    """Knee lines, then the verdict table when there is something to choose between."""
    lines: List[str] = list(knee_lines(run.knees))
    cases = {s["case"] for s in run.summaries}
    workloads = {s["workload"] for s in run.summaries}
    if run.verdict and (len(cases) > 1 or len(workloads) > 1):
        if lines:
            lines.append("")
        lines.append("verdict (sound cases ranked by mean ok/s; tied: no significant difference from the best):")
        lines.append(format_verdict(run.verdict, run.summaries))
    return "\n".join(lines)
