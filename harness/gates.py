"""The run's exit status as a CI gate: `--fail-if`, `--baseline` + `--fail-if-slower`, `--allow-failures`.

    0    every case ran to the end and no threshold was violated
    1    a threshold was violated, a case failed (failed-to-start, crashed, not-ready, timed-out),
         or every case was no-response (the run measured nothing)
    2    bad input (thresholds included: they are parsed before anything starts)
    130  interrupted: 128 + the signal (130 Ctrl-C/SIGINT, 129 SIGHUP, 131 SIGQUIT, 143 SIGTERM)

Gates are read and checked here, once before the run (`gates_from`: every threshold parsed and
the baseline read, so a typo costs no server start) and once after it (`violations`), against
the same record dicts a results file holds. A `broken` strategy is expected to misbehave: its
failures and the thresholds without a `CASE:` prefix do not apply to it, unless the user named
it (in `--strategy`, or as a threshold's `CASE:`). The expression language itself lives in
`harness.results.thresholds`. A run in which every case is `no-response` fails too (a
benchmark that measured nothing is not a pass), except for broken strategies, whose silence is
their expected behaviour, and with `--allow-failures`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .errors import CRASHED, FAILED_TO_START, NO_RESPONSE, NOT_READY, STATUSES, TIMED_OUT, UsageError
from .results import thresholds as th
from .results.records import ResultsError, StrategyRecord
from .results.table import case_name, varying

FAILED = (FAILED_TO_START, CRASHED, NOT_READY, TIMED_OUT)  # a case that did not run to the end
FAIL_PREFIX = "hangbench: fail: "
EXIT_CODES = (
    "exit status: 0 all cases ran and no threshold was violated; 1 a --fail-if/--fail-if-slower threshold "
    "was violated or a case failed (failed-to-start, crashed, not-ready, timed-out; broken strategies are "
    "exempt unless named in --strategy or a threshold's CASE:), or every case was no-response (nothing "
    "measured; broken strategies exempt); 2 bad input; 128 + signal when the harness is stopped by one: "
    "130 Ctrl-C (SIGINT), 129 SIGHUP, 131 SIGQUIT, 143 SIGTERM"
)


@dataclass(frozen=True)
class Gates:
    """What decides the exit status, checked before the run starts."""

    thresholds: tuple[th.Threshold, ...] = ()
    baseline: tuple[dict, ...] | None = None  # the baseline file's records, when --baseline is given
    slower: float | None = None  # tolerated drop in throughput against the baseline, 0..1
    allow_failures: bool = False
    named: tuple[str, ...] = ()  # strategies the user named: broken ones are not exempt then


def gates_from(args: argparse.Namespace) -> Gates:
    """Parse and check every gate option; UsageError (exit 2) for the first bad one."""
    rules = tuple(th.parse_all(getattr(args, "fail_if", None) or []))
    baseline_path = getattr(args, "baseline", None)
    slower_text = getattr(args, "fail_if_slower", None)
    if slower_text is not None and baseline_path is None:
        raise UsageError("--fail-if-slower needs --baseline OLD.json to compare against")
    if baseline_path is not None and slower_text is None:
        raise UsageError("--baseline needs --fail-if-slower PCT (e.g. 10%) to say how much slower fails")
    baseline = None
    if baseline_path is not None:
        from .results.jsonio import read_run

        try:
            baseline = tuple(asdict(record) for record in read_run(baseline_path).strategies)
        except ResultsError as error:
            raise UsageError("--baseline: %s" % error) from None
    named = _named(getattr(args, "strategy", "all") or "all", rules)
    return Gates(
        thresholds=rules,
        baseline=baseline,
        slower=th.parse_slower(slower_text) if slower_text is not None else None,
        allow_failures=bool(getattr(args, "allow_failures", False)),
        named=named,
    )


def _named(strategy: str, rules: Sequence[th.Threshold]) -> tuple[str, ...]:
    names = [] if strategy.strip() == "all" else [n.strip() for n in strategy.split(",") if n.strip()]
    names += [rule.case.split("/")[0] for rule in rules if rule.case]
    return tuple(dict.fromkeys(names))


def check_cases(gates: Gates, names: Sequence[str]) -> None:
    """After planning: a threshold's `CASE:` must name a case of the run (a strategy, a
    strategy/start-method, or the table's case name), or it would silently never fire."""
    known = list(dict.fromkeys(names))
    for rule in gates.thresholds:
        if rule.case is None or rule.case in known:
            continue
        import difflib

        near = difflib.get_close_matches(rule.case, known, n=1, cutoff=0.0)
        hint = "; did you mean %r?" % near[0] if near else ""
        raise UsageError("--fail-if %r names case %r, which is not a case of this run%s" % (rule.text, rule.case, hint))


def violations(gates: Gates, records: Sequence[StrategyRecord]) -> list[th.Violation]:
    """Every violated gate, in record order: failed cases first, then thresholds, then the baseline."""
    vary = varying([(record.start_method, record.python) for record in records])
    # Each record under the name the table gives it, for the messages and for `CASE:` to match.
    dicts = [{**asdict(r), "case": case_name(r.strategy, r.start_method, r.python, vary)} for r in records]
    found: list[th.Violation] = []
    if not gates.allow_failures:
        ok = [status for status in STATUSES if status not in FAILED]
        found += th.check_failures(dicts, ok, gates.named)
        found += _measured_nothing(dicts)
    found += th.check(dicts, gates.thresholds, gates.named)
    if gates.baseline is not None and gates.slower is not None:
        found += th.check_slower(gates.baseline, dicts, gates.slower)
    return found


def _measured_nothing(dicts: Sequence[dict]) -> list[th.Violation]:
    """One violation when every case that is not broken on purpose got no response at all."""
    sound = [d for d in dicts if not d.get("broken")]
    if not sound or any(d.get("status") != NO_RESPONSE for d in sound):
        return []
    return [th.Violation("run", "every case was no-response: not one request got a response, so nothing was measured")]


def report(found: Sequence[th.Violation]) -> int:
    """One line per violation on stderr; the exit status they make (0 or 1)."""
    for violation in found:
        sys.stderr.write(FAIL_PREFIX + " ".join(violation.message.split()) + "\n")
    return 1 if found else 0
