"""The main job: the same workload against each selected strategy, one at a time.

For every case (strategy x start method x interpreter): start `harness.server` in its own
session, wait (bounded) until it answers, warm up and measure with the load generator, capture
forensics if requests hang, stop the server tree and check that nothing leaked; then the next.
Results are rewritten atomically after every case, so a Ctrl-C or a crash keeps what was
measured. Every case has a wall-clock budget; past it the server tree is killed and the case is
reported `timed-out`. Hanging is a finding, not a failure: the run goes on.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import plan as planning
from .load import Progress, Workload, prepare, run_load
from .metrics import LoadResult
from .progress import ProgressPrinter
from .report import markdown, terminal_table
from .results import (
    COMPLETED,
    INTERRUPTED,
    TIMED_OUT,
    ResultsError,
    RunRecord,
    StrategyRecord,
    capture_environment,
    check_writable,
    default_path,
    utc_stamp,
    write_run,
    write_text_atomic,
)
from .supervisor import ServerProcess, StartupFailure

CLIENT_BOUND_UTIL = 0.85  # a client process this busy (fraction of one core) may be the bottleneck
FORENSICS_TIMEOUT_S = 15.0


class Interrupts:
    """First Ctrl-C: stop the current measurement, save partial results. Second: leave now."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> "Interrupts":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        sys.stderr.write("\nharness: interrupted; stopping the current server and saving partial results (Ctrl-C again to quit at once)\n")


@dataclass(frozen=True)
class Settings:
    """What every case shares: the workload template and the run's bounds."""

    workload: Workload
    server_args: List[str]
    ready_timeout_s: float
    stop_grace_s: float
    measure_bound_s: float

    def case_budget_s(self) -> float:
        w = self.workload
        return self.ready_timeout_s + w.warmup_s + self.measure_bound_s + w.deadline_s + 2 * self.stop_grace_s + FORENSICS_TIMEOUT_S + 10


def run_benchmark(args: argparse.Namespace) -> int:
    from .cli import UsageError

    try:
        cases = planning.build(args)
        settings = _settings(args)
        output = Path(args.output) if args.output else default_path(args.label or planning.label(cases))
        check_writable(output)
    except (planning.PlanError, ValueError, ResultsError) as error:
        raise UsageError(str(error))
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    budget = settings.case_budget_s() * len(cases)
    printer = ProgressPrinter(quiet=args.quiet)
    printer.line("hangbench: %d case(s), about %.0f s each (bound %.0f s per case, %.0f s in all); results -> %s"
                 % (len(cases), settings.workload.warmup_s + settings.measure_bound_s + 3, settings.case_budget_s(), budget, output))
    _quiet_library_logs()
    prepare()
    environment = capture_environment()
    config = _config(args, settings, cases)
    records: List[StrategyRecord] = []
    created = utc_stamp()
    with Interrupts() as interrupts, tempfile.TemporaryDirectory(prefix="hangbench-") as scratch:
        for index, case in enumerate(cases, 1):
            if interrupts.stop.is_set():
                break
            printer.start_case(index, len(cases), case.display)
            record = run_case(case, settings, interrupts.stop, printer, Path(scratch))
            records.append(record)
            printer.end_case(record)
            partial = interrupts.stop.is_set() or index < len(cases)
            write_run(RunRecord(created, output.stem, environment, config, records, partial=partial), output)
    run = RunRecord(created, output.stem, environment, config, records, partial=interrupts.stop.is_set())
    write_run(run, output)
    write_text_atomic(output.parent / "latest.md", markdown(run, command))
    print(terminal_table(records))
    print("\nresults: %s  (table: %s)" % (output, output.parent / "latest.md"))
    return 130 if interrupts.stop.is_set() else 0


def _quiet_library_logs() -> None:
    """The supervisor logs through loguru; in a run, only its warnings matter, in one line each."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="harness: {level}: {message}")


def _settings(args: argparse.Namespace) -> Settings:
    duration = args.duration if args.duration is not None else (None if args.requests else 10.0)
    workload = Workload(
        host=args.host if args.host not in ("0.0.0.0", "::", "") else "127.0.0.1",
        port=1,  # replaced by each server's real port
        engine=args.engine,
        concurrency=args.concurrency,
        duration_s=duration,
        requests=args.requests,
        warmup_s=args.warmup,
        connection=args.connection,
        read=args.read,
        deadline_s=args.deadline,
        cpu_us=args.cpu_us,
        sleep_ms=args.sleep_ms,
        bytes=args.bytes,
        client_procs=args.client_procs,
    ).check()
    for name in ("ready_timeout", "stop_grace"):
        if getattr(args, name) <= 0:
            raise ValueError("--%s must be positive (got %g)" % (name.replace("_", "-"), getattr(args, name)))
    # A --requests run has no natural end if the server is slow: bound it all the same.
    measure_bound = duration if duration is not None else planning.MAX_REQUESTS_RUN_S
    return Settings(workload, planning.server_args(args), args.ready_timeout, args.stop_grace, measure_bound)


def _config(args: argparse.Namespace, settings: Settings, cases: Sequence[planning.Case]) -> Dict[str, Any]:
    config = {key: value for key, value in vars(args).items() if key != "command"}
    config.update(
        {
            "cases": [case.display for case in cases],
            "deadline_s": settings.workload.deadline_s,
            "duration_s": settings.workload.duration_s,
            "case_budget_s": settings.case_budget_s(),
        }
    )
    return config


def run_case(case: planning.Case, settings: Settings, stop: threading.Event, printer: ProgressPrinter, scratch: Path) -> StrategyRecord:
    """One strategy, start to finish, within its budget; never raises for what the server does."""
    started = time.monotonic()
    case_dir = scratch / case.slug
    case_dir.mkdir(parents=True, exist_ok=True)
    base = StrategyRecord(strategy=case.strategy, status=COMPLETED, start_method=case.start_method, python=case.python_version, broken=case.broken)
    case_stop = threading.Event()
    watchdog = threading.Timer(settings.case_budget_s() - 2 * settings.stop_grace_s, case_stop.set)
    forwarder = threading.Thread(target=_forward, args=(stop, case_stop), daemon=True)
    watchdog.daemon = True
    watchdog.start()
    forwarder.start()
    server = ServerProcess(forensics_dir=case_dir)
    try:
        record = _attempt(server, case, settings, stop, case_stop, printer, base, case_dir)
    finally:
        watchdog.cancel()
        case_stop.set()  # ends the forwarder
        report = server.stop(settings.stop_grace_s)
    if record.forensics is None and server.forensics is not None:  # captured before a SIGKILL
        record = replace(record, stuck=server.forensics.summary, forensics=server.forensics.to_dict())
    return _with_stop(record, report, time.monotonic() - started)


def _attempt(server: ServerProcess, case: planning.Case, settings: Settings, stop: threading.Event, case_stop: threading.Event,
             printer: ProgressPrinter, base: StrategyRecord, case_dir: Path) -> StrategyRecord:
    try:
        # start() returns once the server has printed its address and answered GET /.
        ready = server.start(case.argv(settings.server_args), env=case.env(case_dir), ready_timeout_s=settings.ready_timeout_s)
    except StartupFailure as failure:
        return replace(base, status=failure.status, message=_failure_message(failure), stuck=failure.stuck)
    record = _measure(server, ready, settings, case_stop, printer, base)
    if stop.is_set():
        return replace(record, status=INTERRUPTED, partial=True)
    if case_stop.is_set():
        return replace(record, status=TIMED_OUT, partial=True)
    return record


def _forward(source: threading.Event, target: threading.Event) -> None:
    """Pass the run-wide stop (Ctrl-C) on to this case's stop, until the case ends."""
    while not target.is_set():
        if source.wait(0.2):
            target.set()


def _measure(server: ServerProcess, ready: Dict[str, Any], settings: Settings, stop: threading.Event, printer: ProgressPrinter,
             base: StrategyRecord) -> StrategyRecord:
    workload = replace(settings.workload, port=int(ready["port"]))
    cpu_at_measure: List[float] = []
    hang_capture: List[threading.Thread] = []

    def on_progress(progress: Progress) -> None:
        printer.progress(progress)
        if progress.phase == "measure" and not cpu_at_measure:
            cpu_at_measure.append(server.sample().cpu_s)
        if progress.phase == "measure" and progress.counts.get("hang") and not hang_capture:
            # Capture while requests are still hanging, in the background: the load goes on.
            thread = threading.Thread(target=server.capture_forensics, args=(FORENSICS_TIMEOUT_S,), daemon=True)
            thread.start()
            hang_capture.append(thread)

    result = run_load(workload, on_progress, stop)
    usage = server.sample()
    for thread in hang_capture:
        thread.join(FORENSICS_TIMEOUT_S + 5)
    if stop.is_set() and server.forensics is None:
        server.capture_forensics(FORENSICS_TIMEOUT_S)  # timed out: where was it stuck?
    record = _from_load(base, result, usage, cpu_at_measure[0] if cpu_at_measure else 0.0)
    forensics = server.forensics
    if forensics is not None:
        record = replace(record, stuck=forensics.summary, forensics=forensics.to_dict())
    return record


def _from_load(base: StrategyRecord, result: LoadResult, usage: Any, cpu_before: float) -> StrategyRecord:
    total = result.total
    cpu_used = max(0.0, usage.cpu_s - cpu_before)
    return replace(
        base,
        requests=dict(result.counts),
        throughput_rps=result.throughput_rps,
        hang_rate=result.hang_rate,
        error_rate=result.error_rate,
        latency_us=dict(result.latency_us),
        histogram=result.histogram,
        elapsed_s=result.elapsed_s,
        client_cpu_util=result.client_cpu_util,
        client_bound=result.client_cpu_util >= CLIENT_BOUND_UTIL,
        server_cpu_s_per_1k=(1000.0 * cpu_used / total) if total else None,
        server_peak_rss_mb=usage.peak_rss_bytes / 2**20 if usage.peak_rss_bytes else None,
        error_detail=dict(result.error_detail),
        partial=result.partial,
    )


def _failure_message(failure: StartupFailure) -> str:
    tail = failure.stderr_tail.strip()
    return "%s%s" % (failure.message, ("\n" + tail) if tail else "")


def _with_stop(record: StrategyRecord, report: Any, wall_s: float) -> StrategyRecord:
    leaks = list(report.leaks())
    stop = report.to_dict()
    return replace(record, stop=stop, leaks=leaks, wall_s=round(wall_s, 3))
