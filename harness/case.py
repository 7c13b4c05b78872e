"""One case of a run, start to finish: start the server, measure, capture forensics, stop.

For a case (strategy x start method x interpreter): start `harness.server` in its own session,
wait (bounded) until it answers, warm up and measure with the load generator, capture forensics
if requests hang, stop the server tree and check that nothing leaked. The case has a wall-clock
budget; past it the server tree is killed and the case is reported `timed-out`. Whatever the
server does, `run_case` returns a record: hanging is a finding, not a failure.

What is measured is gathered here as raw `Measurements`; the record's numbers are derived from
them in `harness.results.derive`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Tuple

from . import placement
from . import plan as planning
from .errors import COMPLETED, CRASHED, INTERRUPTED, TIMED_OUT, describe_exit, plain
from .hangwatch import HangWatch
from .interrupts import Interrupts
from .load import Progress, run_load
from .progress import ProgressPrinter
from .remote import EXTERNAL, run_external
from .results.derive import CpuMark, Measurements, derive
from .results.records import StrategyRecord
from .settings import FORENSICS_TIMEOUT_S, Settings
from .supervise.supervisor import ReadyInfo, ServerProcess, StartupFailure


def run_case(
    case: planning.Case, settings: Settings, interrupts: Interrupts, printer: ProgressPrinter, scratch: Path
) -> StrategyRecord:
    """One strategy, start to finish, within its budget; never raises for what the server does.

    A second Ctrl-C (KeyboardInterrupt) leaves at once, but only after the server tree is stopped."""
    if case.source == EXTERNAL:  # --url: a server the harness did not start (harness.remote)
        return run_external(case, settings, printer, settings.run_load, interrupts.stop)
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
    # Captured before a SIGKILL; or taken while a request was overdue, kept only if one hung.
    if record.forensics is None and (
        report.ignored_sigterm or record.requests.get("hang") or record.status != COMPLETED
    ):
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
    cpus = placement.cpus_for(settings.pin)  # --pin: (server CPUs, client CPUs)
    try:
        # start() returns once the server has printed its address and answered GET /.
        with placement.thread_on(cpus[0]):  # the server and its workers inherit them
            ready = server.start(
                case.argv(settings.server_args), env=case.env(case_dir), ready_timeout_s=settings.ready_timeout_s
            )
    except StartupFailure as failure:
        return replace(base, status=failure.status, message=_with_tail(failure.message, failure.stderr_tail))
    watch = HangWatch(server, int(ready["port"]), FORENSICS_TIMEOUT_S, settings.workload.deadline_s)
    # How many client processes: chosen from the processes the server now runs (harness.placement).
    placed = placement.for_case(settings, len(server.pids()), cpus)
    settings = replace(settings, workload=replace(settings.workload, client_procs=placed.procs))
    base = replace(base, client_procs=placed.procs, client_procs_why=placed.why)
    with placement.thread_on(placed.client_cpus) as client_pinned:  # client processes inherit them
        record = _measure(server, ready, settings, interrupts, case_stop, printer, base, watch)
    record = replace(record, pinned=placement.pinned(placed, server.pid, client_pinned))
    if stop.is_set():  # Ctrl-C: stop at once, no forensics capture to wait for
        return _with_forensics(replace(record, status=INTERRUPTED, partial=True), server)
    exit_code = server.exit_code()
    if exit_code is not None:  # it passed the readiness probe, then died: what was measured is its corpse
        message = "the server exited with %s during the run, after it was ready" % describe_exit(exit_code)
        return replace(record, status=CRASHED, message=_with_tail(message, server.stderr_tail()))
    hung = bool(record.requests.get("hang"))
    if (server.forensics is None and case_stop.is_set()) or (hung and not watch.explains(record)):
        # Timed out, or hangs counted only as the load ended (after its last progress report,
        # e.g. one client whose every request hangs) or not explained by the captures taken
        # while requests were overdue: where is the server stuck?
        watch.capture(final=True)
    if case_stop.is_set():
        return watch.apply(_with_forensics(replace(record, status=TIMED_OUT, partial=True), server))
    if not hung:  # captured only because requests were slow, and none hung: nothing to explain
        return record
    return watch.apply(_with_forensics(record, server))


def _measure(
    server: ServerProcess,
    ready: ReadyInfo,
    settings: Settings,
    interrupts: Interrupts,
    stop: threading.Event,
    printer: ProgressPrinter,
    base: StrategyRecord,
    watch: HangWatch,
) -> StrategyRecord:
    workload = replace(settings.workload, port=int(ready["port"]))
    # The CPU counters at the first progress report of the measurement, which comes up to a
    # second after it began: CPU per request is taken over the same span for both.
    start_mark: List[CpuMark] = []
    hang_capture: List[threading.Thread] = []
    fds_at_start = _open_fds(server)  # before warm-up: a leak may fill up during it

    def on_progress(progress: Progress) -> None:
        printer.progress(progress)
        capture_now = watch.tick(progress)  # at the first hang, or a request overdue (harness.hangwatch)
        if progress.phase == "measure" and not start_mark:
            start_mark.append(_mark(server, sum(progress.counts.values())))
        if capture_now:
            # Capture while requests are still hanging, in the background: the load goes on.
            thread = threading.Thread(target=watch.capture, daemon=True)
            thread.start()
            hang_capture.append(thread)

    interrupts.shielded += 1
    try:
        result = (settings.run_load or run_load)(workload, on_progress, stop)
    finally:
        interrupts.shielded -= 1
    interrupts.leave_if_asked()
    usage = server.sample()
    end_mark = _mark(server, result.total, usage.cpu_s)
    fds = _open_fds(server)
    for thread in hang_capture:
        thread.join(FORENSICS_TIMEOUT_S + 5)
    start = start_mark[0] if start_mark else replace(end_mark, server_cpu_s=0.0, requests_done=0)
    measured = Measurements(
        load=result,
        start=start,
        end=end_mark,
        peak_rss_bytes=usage.peak_mem_bytes or usage.peak_rss_bytes or None,
        mem_kind=usage.mem_kind if usage.peak_mem_bytes else "rss",
        server_fds=(fds_at_start, fds),
        concurrency=workload.concurrency,
    )
    return derive(base, measured)


def _mark(server: ServerProcess, requests_done: int, server_cpu_s: float | None = None) -> CpuMark:
    busy, total = _machine_cpu()
    cpu = server.sample().cpu_s if server_cpu_s is None else server_cpu_s
    return CpuMark(cpu, requests_done, busy, total, time.monotonic())


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


def _forward(source: threading.Event, target: threading.Event) -> None:
    """Pass the run-wide stop (Ctrl-C) on to this case's stop, until the case ends."""
    while not target.is_set():
        if source.wait(0.2):
            target.set()


def _with_forensics(record: StrategyRecord, server: ServerProcess) -> StrategyRecord:
    forensics = server.forensics
    if forensics is None:
        return record
    return replace(record, stuck=forensics.summary, forensics=plain(forensics.to_dict()))


def _with_tail(message: str, stderr_tail: str) -> str:
    tail = stderr_tail.strip()
    return "%s%s" % (message, ("\n" + tail) if tail else "")


def _with_stop(record: StrategyRecord, report: Any, wall_s: float) -> StrategyRecord:
    leaks = list(record.leaks) + list(report.leaks())
    return replace(record, stop=plain(report.to_dict()), leaks=leaks, wall_s=round(wall_s, 3))
