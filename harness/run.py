"""The main job: the same workload against each selected strategy, one at a time.

Checks everything first (settings, cases, output paths: one sentence and exit 2 for anything
wrong, before any server starts), then runs each case (`harness.case`) in turn. Results are
rewritten atomically after every case, so a Ctrl-C or a crash keeps what was measured; the
Markdown table is written at the end, beside the JSON as `<stem>.md` (or `results/latest.md`
for the default output path). Hanging is a finding, not a failure: the run goes on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Sequence

from . import plan as planning
from .case import run_case
from .errors import UsageError, prog_name
from .gates import check_cases, gates_from, report, violations
from .interrupts import Interrupts
from .load import prepare
from .matrix import build as build_matrix
from .matrix import job_names, labelled, saturated_below
from .progress import ProgressPrinter
from .remote import remote_from
from .results.analysis import analysed
from .results.analysis import text as analysis_text
from .results.environment import capture_environment
from .results.jsonio import Outputs, plan_outputs, utc_stamp, write_run, write_text_atomic
from .results.records import ResultsError, RunRecord, StrategyRecord
from .results.table import case_name, markdown, terminal_table, varying
from .settings import Settings, settings_from


def run_benchmark(args: argparse.Namespace) -> int:
    gates = gates_from(args)  # thresholds and baseline first: a typo there costs no server start
    remote = remote_from(args)  # --url, --engine distributed (harness.remote)
    settings = settings_from(remote.load_args(args))
    cases = remote.cases() or planning.build(args)
    check_cases(gates, _case_names_for_gates(cases))  # a CASE: naming no case of the run never fires
    matrix = build_matrix(args, settings, cases)  # x workloads x levels x repetitions (harness.matrix)
    settings = matrix.jobs[0].settings  # what every job shares: warm-up, measurement, deadline
    try:
        outputs = plan_outputs(args.output, args.label or planning.label(cases))
    except ResultsError as error:
        raise UsageError(str(error)) from None
    command = prog_name() + " " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    budget = sum(job.settings.case_budget_s() for job in matrix.jobs)
    workload = settings.workload
    printer = ProgressPrinter(quiet=args.quiet, warmup_s=workload.warmup_s, duration_s=workload.duration_s)
    printer.line(
        "hangbench: %d case(s), about %.0f s each (bound %.0f s per case, %.0f s in all); results -> %s"
        % (
            len(matrix.jobs),
            workload.warmup_s + settings.measure_bound_s + 3,
            settings.case_budget_s(),
            budget,
            outputs.shown,
        )
    )
    if matrix.suite:
        printer.line("hangbench: suite: %s" % matrix.suite.describe())
    _quiet_library_logs()
    prepare()
    environment = capture_environment()
    config = {**config_of(args, settings, cases), **matrix.describe()}
    names = job_names(matrix.jobs)
    records: List[StrategyRecord] = []
    created = utc_stamp()
    label = outputs.shown.stem
    with (
        Interrupts() as interrupts,
        tempfile.TemporaryDirectory(prefix="hangbench-") as scratch,
        remote.load(args.quiet) as load,
    ):
        settings = replace(settings, run_load=load)  # one distributed master for every case, or None
        for index, job in enumerate(matrix.jobs, 1):
            if interrupts.stop.is_set():
                break
            if saturated_below(job, records):  # a rate sweep past the point of saturation (harness.matrix)
                skipped = "[%d/%d] %s" % (index, len(matrix.jobs), names[index - 1])
                printer.line(skipped + ": skipped, saturated at a lower rate")
                continue
            printer.start_case(index, len(matrix.jobs), names[index - 1])
            job_settings = replace(job.settings, run_load=settings.run_load)
            record = remote.annotate(run_case(job.case, job_settings, interrupts, printer, Path(scratch)))
            record = labelled(record, job)
            records.append(record)
            printer.end_case(record)
            partial = interrupts.stop.is_set() or index < len(matrix.jobs)
            write_run(RunRecord(created, label, environment, config, records, partial=partial), outputs.json)
    run = RunRecord(created, label, environment, config, records, partial=interrupts.stop.is_set())
    run = analysed(run, matrix.slo_p99_ms)
    _write_all(run, outputs, command)
    print(terminal_table(records))
    after = analysis_text(run)
    if after:
        print("\n" + after)
    print("\nresults: %s  (table: %s)" % (outputs.shown, _table_shown(outputs)))
    if getattr(args, "report", False):
        _write_report(outputs)
    if interrupts.stop.is_set():
        return interrupts.exit_status
    return report(violations(gates, records))


def _write_all(run: RunRecord, outputs: Outputs, command: str) -> None:
    write_run(run, outputs.json)
    write_text_atomic(outputs.table, markdown(run, command))


def _write_report(outputs: Outputs) -> None:
    """`--report`: the HTML page beside the JSON. A failure here loses nothing: the JSON is written."""
    from .report import ReportError, write_html

    page = outputs.shown.with_suffix(".html")
    try:
        write_html([outputs.json], page)
    except (ReportError, OSError) as error:
        sys.stderr.write("hangbench: warning: the report was not written: %s\n" % error)
        return
    print("report: %s" % page)


def _table_shown(outputs: Outputs) -> Path:
    """The table's path as the user would write it: beside the JSON path they gave."""
    return outputs.shown.parent / outputs.table.name


def case_names(cases: Sequence[planning.Case]) -> List[str]:
    """Each case as the table will name it."""
    vary = varying([(case.start_method, case.python_version) for case in cases])
    return [case_name(case.strategy, case.start_method, case.python_version, vary) for case in cases]


def _case_names_for_gates(cases: Sequence[planning.Case]) -> List[str]:
    """Every name a threshold's `CASE:` may use for these cases (`results.thresholds._applies`)."""
    names = [case.strategy for case in cases]
    names += ["%s/%s" % (case.strategy, case.start_method) for case in cases if case.start_method]
    return names + case_names(cases)


def _quiet_library_logs() -> None:
    """The supervisor logs through loguru; in a run, only its warnings matter, in one line each."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="hangbench: {level}: {message}")


def config_of(args: argparse.Namespace, settings: Settings, cases: Sequence[planning.Case]) -> Dict[str, object]:
    config = {key: value for key, value in vars(args).items() if key not in ("command", "argv")}
    config.update(
        {
            "cases": [case.display for case in cases],
            "deadline_s": settings.workload.deadline_s,
            "duration_s": settings.workload.duration_s,
            "case_budget_s": settings.case_budget_s(),
        }
    )
    return config
