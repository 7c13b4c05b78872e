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
import json
import math
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from . import plan as planning
from .load import Progress, Workload, prepare, run_load
from .load.metrics import LoadResult
from .progress import ProgressPrinter
from .results.records import (
    COMPLETED,
    CRASHED,
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
from .results.table import markdown, terminal_table
from .supervise.supervisor import ReadyInfo, ServerProcess, StartupFailure

CLIENT_BOUND_UTIL = 0.85  # a client process this busy (fraction of one core) may be the bottleneck
MACHINE_SATURATED = 0.9  # share of all cores busy over the measurement
FORENSICS_TIMEOUT_S = 15.0
FD_GROWTH_SLACK = 64  # fds a server may open during a run for its own purposes (logs, pipes, workers)


class Interrupts:
    """First Ctrl-C: stop the current measurement, save partial results. Second: leave now.
    SIGTERM (`timeout`, a CI job's cancel, `kill`) counts as a Ctrl-C: left to its default, it
    would end the harness at once and leave the current server tree running.

    "Now" has two exceptions, marked by `shielded` > 0, where a second Ctrl-C only sets `leave`
    and `leave_if_asked()` raises KeyboardInterrupt once the section is over: stopping a server
    tree (cut short, it would leave the server running), and the load generator (it ends within
    a moment of the first Ctrl-C anyway, and a KeyboardInterrupt inside an event-loop callback
    is swallowed by the loop, or turns its teardown into a page of noise)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.shielded = 0
        self.leave = False
        self.signum = signal.SIGINT  # the first signal received
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)  # 130 after Ctrl-C, 143 after SIGTERM, as the shell reports

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            if self.shielded:
                self.leave = True
                sys.stderr.write("\nharness: leaving as soon as the server is stopped\n")
                return
            raise KeyboardInterrupt
        self.signum = signal.Signals(signum)
        self.stop.set()
        how = " by SIGTERM" if signum == signal.SIGTERM else ""
        sys.stderr.write(
            "\nharness: interrupted%s; stopping the current server and saving partial results (Ctrl-C again to quit at once)\n"
            % how
        )

    def leave_if_asked(self) -> None:
        if self.leave and not self.shielded:
            raise KeyboardInterrupt


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
        return (
            self.ready_timeout_s
            + w.warmup_s
            + self.measure_bound_s
            + w.deadline_s
            + 2 * self.stop_grace_s
            + FORENSICS_TIMEOUT_S
            + 10
        )


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
    printer.line(
        "hangbench: %d case(s), about %.0f s each (bound %.0f s per case, %.0f s in all); results -> %s"
        % (
            len(cases),
            settings.workload.warmup_s + settings.measure_bound_s + 3,
            settings.case_budget_s(),
            budget,
            output,
        )
    )
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
            record = run_case(case, settings, interrupts, printer, Path(scratch))
            records.append(record)
            printer.end_case(record)
            partial = interrupts.stop.is_set() or index < len(cases)
            write_run(RunRecord(created, output.stem, environment, config, records, partial=partial), output)
    run = RunRecord(created, output.stem, environment, config, records, partial=interrupts.stop.is_set())
    write_run(run, output)
    write_text_atomic(output.parent / "latest.md", markdown(run, command))
    print(terminal_table(records))
    print("\nresults: %s  (table: %s)" % (output, output.parent / "latest.md"))
    return interrupts.exit_status if interrupts.stop.is_set() else 0


def _quiet_library_logs() -> None:
    """The supervisor logs through loguru; in a run, only its warnings matter, in one line each."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="harness: {level}: {message}")


# Workload.check() names its fields; a user of the command line knows the options.
_OPTION_NAMES = {
    "duration_s": "--duration",
    "warmup_s": "--warmup",
    "deadline_s": "--deadline",
    "client_procs": "--client-procs",
    "cpu_us": "--cpu-us",
    "sleep_ms": "--sleep-ms",
    "concurrency": "--concurrency",
    "requests": "--requests",
    "bytes": "--bytes",
}


def _settings(args: argparse.Namespace) -> Settings:
    if args.duration is not None and args.requests is not None:
        raise ValueError("give either --duration or --requests, not both")
    duration = args.duration if args.duration is not None else (None if args.requests is not None else 10.0)
    try:
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
    except ValueError as error:
        raise ValueError(_option_names(str(error)))
    for name in ("ready_timeout", "stop_grace"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):  # nan and inf would unbound every wait
            raise ValueError("--%s must be a positive number of seconds (got %g)" % (name.replace("_", "-"), value))
    # A --requests run has no natural end if the server is slow: bound it all the same.
    measure_bound = duration if duration is not None else planning.MAX_REQUESTS_RUN_S
    return Settings(workload, planning.server_args(args), args.ready_timeout, args.stop_grace, measure_bound)


def _option_names(message: str) -> str:
    """Workload.check() names the workload's fields ("deadline_s must be ..."); say the options."""
    return re.sub(r"^\w+|\b\w+_(?:s|us|ms|procs)\b", lambda m: _OPTION_NAMES.get(m.group(0), m.group(0)), message)


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


def run_case(
    case: planning.Case, settings: Settings, interrupts: Interrupts, printer: ProgressPrinter, scratch: Path
) -> StrategyRecord:
    """One strategy, start to finish, within its budget; never raises for what the server does.

    A second Ctrl-C (KeyboardInterrupt) leaves at once, but only after the server tree is stopped."""
    started = time.monotonic()
    case_dir = scratch / case.slug
    case_dir.mkdir(parents=True, exist_ok=True)
    base = StrategyRecord(
        strategy=case.strategy,
        status=COMPLETED,
        start_method=case.start_method,
        python=case.python_version,
        broken=case.broken,
    )
    case_stop = threading.Event()
    watchdog = threading.Timer(settings.case_budget_s() - 2 * settings.stop_grace_s, case_stop.set)
    forwarder = threading.Thread(target=_forward, args=(interrupts.stop, case_stop), daemon=True)
    watchdog.daemon = True
    watchdog.start()
    forwarder.start()
    server = ServerProcess(forensics_dir=case_dir)
    try:
        record = _attempt(server, case, settings, interrupts, case_stop, printer, base, case_dir)
    finally:
        interrupts.shielded += 1  # first thing: from here a Ctrl-C must not cut the stop short
        try:
            watchdog.cancel()
            case_stop.set()  # ends the forwarder
            report = server.stop(settings.stop_grace_s)
        finally:
            interrupts.shielded -= 1
    interrupts.leave_if_asked()
    if record.forensics is None:  # captured before a SIGKILL
        record = _with_forensics(record, server)
    return _with_stop(record, report, time.monotonic() - started)


def _attempt(
    server: ServerProcess,
    case: planning.Case,
    settings: Settings,
    interrupts: Interrupts,
    case_stop: threading.Event,
    printer: ProgressPrinter,
    base: StrategyRecord,
    case_dir: Path,
) -> StrategyRecord:
    stop = interrupts.stop
    try:
        # start() returns once the server has printed its address and answered GET /.
        ready = server.start(
            case.argv(settings.server_args), env=case.env(case_dir), ready_timeout_s=settings.ready_timeout_s
        )
    except StartupFailure as failure:
        return replace(base, status=failure.status, message=_failure_message(failure), stuck=failure.stuck)
    record = _measure(server, ready, settings, interrupts, case_stop, printer, base)
    if stop.is_set():  # Ctrl-C: stop at once, no forensics capture to wait for
        return _with_forensics(replace(record, status=INTERRUPTED, partial=True), server)
    exit_code = server.exit_code()
    if exit_code is not None:  # it passed the readiness probe, then died: what was measured is its corpse
        return replace(record, status=CRASHED, message=_crash_message(exit_code, server.stderr_tail()))
    if server.forensics is None and (case_stop.is_set() or record.requests.get("hang")):
        # Timed out, or hangs counted only as the load ended (after its last progress report,
        # e.g. one client whose every request hangs): where is the server stuck?
        server.capture_forensics(FORENSICS_TIMEOUT_S)
    if case_stop.is_set():
        return _with_forensics(replace(record, status=TIMED_OUT, partial=True), server)
    return _with_forensics(record, server)


def _with_forensics(record: StrategyRecord, server: ServerProcess) -> StrategyRecord:
    forensics = server.forensics
    if forensics is None:
        return record
    return replace(record, stuck=forensics.summary, forensics=_plain(forensics.to_dict()))


def _plain(data: Dict[str, Any]) -> Dict[str, Any]:
    """As JSON will read it back (tuples become lists), so that a record equals its round trip."""
    plain: Dict[str, Any] = json.loads(json.dumps(data))
    return plain


def _forward(source: threading.Event, target: threading.Event) -> None:
    """Pass the run-wide stop (Ctrl-C) on to this case's stop, until the case ends."""
    while not target.is_set():
        if source.wait(0.2):
            target.set()


def _measure(
    server: ServerProcess,
    ready: ReadyInfo,
    settings: Settings,
    interrupts: Interrupts,
    stop: threading.Event,
    printer: ProgressPrinter,
    base: StrategyRecord,
) -> StrategyRecord:
    workload = replace(settings.workload, port=int(ready["port"]))
    # (server CPU, requests ended) at the first progress report of the measurement, which comes
    # up to a second after it began: CPU per request is taken over the same span for both.
    cpu_at_measure: List[Tuple[float, int, Tuple[float, float], float]] = []
    hang_capture: List[threading.Thread] = []
    fds_at_start = _open_fds(server)  # before warm-up: a leak may fill up during it

    def on_progress(progress: Progress) -> None:
        printer.progress(progress)
        if progress.phase == "measure" and not cpu_at_measure:
            cpu_at_measure.append(
                (server.sample().cpu_s, sum(progress.counts.values()), _machine_cpu(), time.monotonic())
            )
        if progress.phase == "measure" and progress.counts.get("hang") and not hang_capture:
            # Capture while requests are still hanging, in the background: the load goes on.
            thread = threading.Thread(target=server.capture_forensics, args=(FORENSICS_TIMEOUT_S,), daemon=True)
            thread.start()
            hang_capture.append(thread)

    interrupts.shielded += 1
    try:
        result = run_load(workload, on_progress, stop)
    finally:
        interrupts.shielded -= 1
    interrupts.leave_if_asked()
    usage, machine, now, fds = server.sample(), _machine_cpu(), time.monotonic(), _open_fds(server)
    for thread in hang_capture:
        thread.join(FORENSICS_TIMEOUT_S + 5)
    before = cpu_at_measure[0] if cpu_at_measure else (0.0, 0, machine, now)
    record = _from_load(base, result, usage, before, machine, now)
    fds_before = fds_at_start
    growth = fds - fds_before
    record = replace(record, server_fds=[fds_before, fds])
    # Open connections account for up to `concurrency` fds (twice, counting a dup'ing parent);
    # growth well past that is fds the server never closes.
    if growth > 2 * workload.concurrency + FD_GROWTH_SLACK:
        record = replace(record, leaks=["the server's open fds grew from %d to %d during the run" % (fds_before, fds)])
    return record


def _open_fds(server: ServerProcess) -> int:
    """Open fds of every live process of the server tree (0 where /proc cannot tell)."""
    import psutil

    total = 0
    for pid in server.pids():
        try:
            total += psutil.Process(pid).num_fds()
        except (psutil.Error, OSError):
            pass
    return total


def _machine_cpu() -> Tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    import psutil

    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def is_client_bound(client_util_max: float, client_cores: float, server_cores: float, machine_busy: float) -> bool:
    """Was the load generator, rather than the server, the bottleneck?

    Either one client process used (nearly) a whole core, or every core of the machine was busy
    and the client took at least a third of the CPU the run used (client >= half the server's):
    on a saturated machine, CPU the client burns is CPU the server cannot have, so a cheaper
    client (wrk) would measure more.
    """
    if client_util_max >= CLIENT_BOUND_UTIL:
        return True
    return machine_busy >= MACHINE_SATURATED and client_cores >= 0.5 * server_cores


def _from_load(
    base: StrategyRecord,
    result: LoadResult,
    usage: Any,
    before: Tuple[float, int, Tuple[float, float], float],
    machine: Tuple[float, float],
    now: float,
) -> StrategyRecord:
    total = result.total
    cpu_used = max(0.0, usage.cpu_s - before[0])
    served = total - before[1] if total > before[1] else total
    span = max(now - before[3], 1e-9)
    machine_total = machine[1] - before[2][1]
    machine_busy = (machine[0] - before[2][0]) / machine_total if machine_total > 0 else 0.0
    server_cores = cpu_used / span
    client_cores = result.client_cpu_s / result.elapsed_s if result.elapsed_s > 0 else 0.0
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
        client_cpu_s=round(result.client_cpu_s, 3),
        server_cpu_util=round(server_cores, 3),
        machine_cpu_busy=round(machine_busy, 3),
        client_bound=is_client_bound(result.client_cpu_util, client_cores, server_cores, machine_busy),
        server_cpu_s_per_1k=(1000.0 * cpu_used / served) if served else None,
        server_peak_rss_mb=usage.peak_rss_bytes / 2**20 if usage.peak_rss_bytes else None,
        error_detail=dict(result.error_detail),
        partial=result.partial,
    )


def _crash_message(exit_code: int, stderr_tail: str) -> str:
    how = "exit code %d" % exit_code if exit_code >= 0 else "signal %s" % _signal_name(-exit_code)
    tail = stderr_tail.strip()
    return "the server exited with %s during the run, after it was ready%s" % (how, ("\n" + tail) if tail else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _failure_message(failure: StartupFailure) -> str:
    tail = failure.stderr_tail.strip()
    return "%s%s" % (failure.message, ("\n" + tail) if tail else "")


def _with_stop(record: StrategyRecord, report: Any, wall_s: float) -> StrategyRecord:
    leaks = list(record.leaks) + list(report.leaks())
    stop = _plain(report.to_dict())
    return replace(record, stop=stop, leaks=leaks, wall_s=round(wall_s, 3))
