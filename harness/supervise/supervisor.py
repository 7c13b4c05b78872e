"""Start one server process, watch it, and stop its whole tree cleanly: the lifecycle.

`ServerProcess` is the only way the harness runs a server. Its contract with the orchestration:

* `start()` returns only once the server has printed a valid ready line (see `readyline`) and,
  by default, answered a readiness probe (see `probes`); otherwise it raises `StartupFailure`
  with a `status` the report can tabulate -- `failed-to-start` (exited before the ready line),
  `crashed` (exited after it), or `not-ready` (alive but silent, a ready line the harness cannot
  use, or listening but never answering) -- and has already stopped whatever it started. So
  after `start()` either a server is answering or nothing is left.
* While it runs, a sampler thread records CPU and memory of the whole tree (see `sampling`).
* `stop()` ends the whole tree, however it behaves (see `proctree`), and returns a `StopReport`
  that checks the promises: nothing left, the port is free again, and the harness did not leak
  file descriptors (see `fdaudit`).

How the server is started -- own session, own cgroup, run markers, watchdog pipe, drained
output -- is `launch`'s job; this module sequences start, watch and stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple, Union

from loguru import logger

from ..errors import CRASHED, FAILED_TO_START, NOT_READY
from . import fdaudit
from . import forensics as forensics_mod
from .launch import Launched, close, launch
from .output import OutputPump
from .probes import PROBES, AnswerCheck, pending_request, port_is_free, probe_until_answered
from .proctree import KillReport, ProcessTree, ProcTreeError, enable_subreaper, reap_orphans
from .readyline import ReadyInfo, await_ready_line, requested_host
from .reaper import peek_exit
from .reports import ResourceSample, StartupFailure, StopReport, SupervisorError, describe_exit
from .sampling import SAMPLE_INTERVAL_S, Sampler

__all__ = [
    "CRASHED",
    "FAILED_TO_START",
    "NOT_READY",
    "PROBES",
    "AnswerCheck",
    "ReadyInfo",
    "ResourceSample",
    "ServerProcess",
    "StartupFailure",
    "StopReport",
    "SupervisorError",
    "port_is_free",
]

PathArg = Union[str, "os.PathLike[str]"]
_REAP_ROOT_TIMEOUT_S = 5.0
_MAX_PROBE_ROUNDS = 1000
_PROBE_RETRY_PAUSE_S = 0.05
_THREAD_JOIN_TIMEOUT_S = 2.0
_KILL_CAPTURE_TIMEOUT_S = 10.0  # forensics of a server that ignored SIGTERM, before SIGKILL


class ServerProcess:
    """One server process tree, from Popen to the last reaped orphan. Use as a context manager:

        with ServerProcess(log_dir) as server:
            ready = server.start(argv, env, ready_timeout_s=10)
            ...                         # load it; server.sample(); server.capture_forensics()
            report = server.stop(grace_s=5)

    Leaving the block stops the server if `stop()` was not called.
    """

    def __init__(
        self,
        log_dir: Optional[PathArg] = None,
        *,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
        forensics_dir: Optional[PathArg] = None,
        capture_on_failure: bool = True,
        default_grace_s: float = 5.0,
        use_cgroup: bool = True,
    ) -> None:
        if sample_interval_s <= 0:
            raise SupervisorError("sample_interval_s must be positive (got %r)" % sample_interval_s)
        self._own_log_dir = log_dir is None
        self._log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="hangbench-"))
        self._forensics_dir = Path(forensics_dir) if forensics_dir is not None else self._log_dir / "stacks"
        self._forensics_out = Path(forensics_dir) if forensics_dir is not None else self._log_dir
        self._forensics: Optional[forensics_mod.Forensics] = None
        self._sample_interval_s = sample_interval_s
        self._capture_on_failure = capture_on_failure
        self._default_grace_s = default_grace_s
        self._use_cgroup = use_cgroup
        self.run_id = uuid.uuid4().hex[:16]
        self._popen: Optional[subprocess.Popen[bytes]] = None
        self._tree: Optional[ProcessTree] = None
        self._launched: Optional[Launched] = None
        self._pump: Optional[OutputPump] = None
        self._ready: Optional[ReadyInfo] = None
        self._report: Optional[StopReport] = None
        self._fds_before: Dict[int, str] = {}
        self._fd_count_before = 0
        self._started_at = 0.0
        self._sampler: Optional[Sampler] = None
        self._log_errors: List[str] = []
        self._stop_lock = threading.RLock()

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._popen is not None and self._report is None:
            self.stop(self._default_grace_s)
        elif self._popen is None:
            self._remove_own_log_dir()

    # ------------------------------------------------------------------ properties

    @property
    def log_dir(self) -> Path:
        return self._log_dir

    @property
    def stderr_path(self) -> Path:
        return self._log_dir / "stderr.log"

    @property
    def stdout_path(self) -> Path:
        return self._log_dir / "stdout.log"

    @property
    def pid(self) -> Optional[int]:
        return self._popen.pid if self._popen is not None else None

    @property
    def ready(self) -> Optional[ReadyInfo]:
        return self._ready

    @property
    def port(self) -> Optional[int]:
        return self._ready.port if self._ready is not None else None

    @property
    def stop_report(self) -> Optional[StopReport]:
        return self._report

    @property
    def containment(self) -> str:
        """ "cgroup" or "subreaper+poll": how the tree's members are found."""
        return "cgroup" if self._launched is not None and self._launched.cgroup is not None else "subreaper+poll"

    def exit_code(self) -> Optional[int]:
        """The server process's exit code if it has exited (negative: killed by a signal)."""
        return self._peek_exit() if self._popen is not None else None

    def alive(self) -> bool:
        return self._popen is not None and self._peek_exit() is None

    def _peek_exit(self) -> Optional[int]:
        assert self._popen is not None
        return peek_exit(self._popen)

    def pids(self) -> Tuple[int, ...]:
        """The processes of the tree alive now (root, workers, escaped descendants)."""
        return self._tree.refresh() if self._tree is not None else ()

    # ------------------------------------------------------------------ start

    def start(
        self,
        argv: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        ready_timeout_s: float = 10.0,
        *,
        probe: Optional[str] = "accept",
        cwd: Optional[PathArg] = None,
    ) -> ReadyInfo:
        """Start the server and wait, up to `ready_timeout_s` in all, for its ready line and then
        (unless `probe` is None) for a response to `probe` (see `wait_answering`).

        `env` is the whole environment, as for Popen (default: ours); the run markers, the
        watchdog fd and HANGBENCH_FORENSICS_DIR are added. Raises StartupFailure after stopping
        the tree.
        """
        if self._popen is not None:
            raise SupervisorError("this ServerProcess was already started; use a new one per server run")
        if probe is not None and probe not in PROBES:
            raise SupervisorError("probe must be one of %s or None (got %r)" % (", ".join(PROBES), probe))
        enable_subreaper()
        self._fds_before = fdaudit.fd_targets()
        self._fd_count_before = fdaudit.open_fd_count()
        self._started_at = time.monotonic()
        deadline = self._started_at + ready_timeout_s
        self._spawn(list(argv), env, cwd)
        assert self._pump is not None and self._popen is not None
        outcome = await_ready_line(
            self._pump,
            self._peek_exit,
            self._popen.pid,
            self._started_at,
            deadline,
            ready_timeout_s,
            requested_host(argv),  # the ready line's host must be this one (never probe elsewhere)
        )
        if not isinstance(outcome, ReadyInfo):
            self._fail(*outcome)
        self._ready = outcome
        assert self._sampler is not None
        self._sampler.start()
        if probe is not None:
            self.wait_answering(max(deadline - time.monotonic(), 0.0), probe=probe)
        else:
            self._fail_if_exited()
        return self._ready

    def _spawn(self, argv: Sequence[str], env: Optional[Mapping[str, str]], cwd: Optional[PathArg]) -> None:
        try:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self._forensics_dir.mkdir(parents=True, exist_ok=True)
            logs: Tuple[Optional[Path], Optional[Path]] = (self.stdout_path, self.stderr_path)
        except OSError as error:  # a full disk: keep the output in memory only
            self._log_errors.append("cannot create %s: %s" % (self._log_dir, error.strerror or error))
            logs = (None, None)
        try:
            launched = launch(argv, env, cwd, self.run_id, self._forensics_dir, logs, self._use_cgroup)
        except StartupFailure:
            self._remove_own_log_dir()
            raise
        self._launched, self._popen, self._pump = launched, launched.popen, launched.pump
        try:
            self._tree = ProcessTree(launched.popen.pid, self.run_id, launched.cgroup)
        except ProcTreeError as error:  # cannot happen while the root is an unreaped child
            logger.warning("cannot track the process tree of server {}: {}", launched.popen.pid, error)
            self._tree = None
        self._sampler = Sampler(self._tree, self._started_at, self._sample_interval_s, str(launched.popen.pid))

    # ------------------------------------------------------------------ readiness

    def wait_answering(self, timeout_s: float, probe: str = "accept") -> AnswerCheck:
        """Wait until the server responds to `probe` on its port (see `probes`), each attempt
        with its own timeout. A server that exits meanwhile is `crashed`, one that never
        responds `not-ready`."""
        if self._ready is None:
            raise SupervisorError("wait_answering() needs a started server: call start() first")
        if probe not in PROBES:
            raise SupervisorError("probe must be one of %s (got %r)" % (", ".join(PROBES), probe))
        deadline = time.monotonic() + timeout_s
        outcome: Union[AnswerCheck, str] = "no attempt made (timeout %.1f s)" % timeout_s
        for _ in range(_MAX_PROBE_ROUNDS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            outcome = probe_until_answered(self._ready.host, self._ready.port, probe, remaining, self._fail_if_exited)
            if not isinstance(outcome, AnswerCheck):
                break
            if outcome.outcome != "closed" or not port_is_free(self._ready.host, self._ready.port):
                return outcome
            # Reset, and nothing listens any more: the server closed its listener, probably on
            # its way out. Not an answer: probe again (it will be refused, or the exit seen).
            outcome = "the connection was reset and the port no longer listens"
            time.sleep(_PROBE_RETRY_PAUSE_S)
        self._fail_if_exited()
        self._fail(
            NOT_READY,
            "listening on %s:%d but no response to the %s probe within %.1f s: %s"
            % (self._ready.host, self._ready.port, probe, timeout_s, outcome),
        )

    def _fail_if_exited(self) -> None:
        assert self._popen is not None
        code = self._peek_exit()
        if code is not None:
            after = time.monotonic() - self._started_at - (self._ready.elapsed_s if self._ready else 0.0)
            self._fail(
                CRASHED,
                "the server exited with %s after its ready line (noticed %.2f s later)" % (describe_exit(code), after),
            )

    def _fail(self, status: str, message: str) -> NoReturn:
        """Stop the tree (capturing where a live server is stuck first) and raise."""
        stuck = None
        if status == NOT_READY and self._capture_on_failure and self.alive():
            try:
                with pending_request(self._ready):
                    stuck = self.capture_forensics(timeout_s=10.0).summary
                message += "; stuck: " + stuck
            except Exception as error:
                logger.warning("forensics of not-ready server failed: {}", error)
        report = self.stop(grace_s=min(self._default_grace_s, 2.0))
        raise StartupFailure(status, message, self.stderr_tail(), report.exit_code, report, stuck)

    # ------------------------------------------------------------------ watching

    def stderr_tail(self, n_lines: int = 20) -> str:
        """The last `n_lines` lines the server wrote to stderr (also after stop())."""
        if self._pump is None or n_lines <= 0:
            return ""
        return "\n".join(self._pump.stderr_log.tail_text().splitlines()[-n_lines:])

    def sample(self) -> ResourceSample:
        """Measure the tree now: CPU so far, memory now and at its peak (see `sampling`)."""
        return self._sampler.sample() if self._sampler is not None else ResourceSample(0.0, 0.0, 0, 0, 0)

    @property
    def last_sample(self) -> Optional[ResourceSample]:
        """The most recent sample (background sampler or `sample()`), without measuring."""
        return self._sampler.last if self._sampler is not None else None

    def capture_forensics(
        self, timeout_s: float = 15.0, out_dir: Optional[PathArg] = None, method: str = "auto"
    ) -> forensics_mod.Forensics:
        """Stacks, states and fds of every live process of the tree, kept as `forensics` and
        written as JSON under `out_dir` (default: `forensics_dir` if one was given, else the
        log directory). Safe to call from another thread while the server runs."""
        if self._report is not None:
            result = forensics_mod.capture((), None, timeout_s, method=method)  # stopped: nothing left
        else:
            target = Path(out_dir) if out_dir is not None else self._forensics_out
            result = forensics_mod.capture(
                self.pids(), target, timeout_s, method=method, faulthandler_dir=str(self._forensics_dir)
            )
        if result.write_error:
            self._log_errors.append(result.write_error)
        self._forensics = result
        return result

    @property
    def forensics(self) -> Optional[forensics_mod.Forensics]:
        """The most recent capture, or None."""
        return self._forensics

    # ------------------------------------------------------------------ stop

    def stop(self, grace_s: Optional[float] = None) -> StopReport:
        """SIGTERM, wait up to `grace_s`, SIGKILL whatever is left of the tree; reap; check
        that nothing is left, the port is free and no fd leaked. Idempotent and thread-safe."""
        with self._stop_lock:
            if self._report is None:
                self._report = self._stop(self._default_grace_s if grace_s is None else grace_s)
            return self._report

    def _stop(self, grace_s: float) -> StopReport:
        if self._popen is None:  # never started, or could not even be executed
            self._remove_own_log_dir()
            return StopReport(
                exit_code=None, ignored_sigterm=False, killed_pids=(), leftover_pids=(), port_free=None, fd_leak=0
            )
        started = time.monotonic()
        before_kill = self._safe_sample(None)
        kill = self._tree.kill(grace_s, self._capture_before_kill) if self._tree is not None else None
        exit_code, root_left = self._reap_root()
        reap_orphans()
        if self._sampler is not None:
            self._sampler.stop(_THREAD_JOIN_TIMEOUT_S)
        final = self._safe_sample(before_kill)  # CPU of processes seen exiting during the kill
        if self._launched is not None:
            self._log_errors.extend(close(self._launched, _THREAD_JOIN_TIMEOUT_S))
        report = self._make_report(kill, exit_code, root_left, final, time.monotonic() - started)
        self._remove_own_log_dir()
        report = self._with_fd_check(report)
        if not report.clean:
            logger.warning("server {} left something behind: {}", self.pid, report)
        return report

    def _capture_before_kill(self) -> None:
        """The server ignored SIGTERM: record where it is stuck, unless a capture exists."""
        if self._forensics is None:
            self.capture_forensics(_KILL_CAPTURE_TIMEOUT_S)

    def _reap_root(self) -> Tuple[Optional[int], bool]:
        assert self._popen is not None
        try:
            return self._popen.wait(timeout=_REAP_ROOT_TIMEOUT_S), False
        except subprocess.TimeoutExpired:
            logger.error("server pid {} did not exit after SIGKILL", self._popen.pid)
            return None, True

    def _safe_sample(self, fallback: Optional[ResourceSample]) -> Optional[ResourceSample]:
        return self._sampler.safe_sample(fallback) if self._sampler is not None else fallback

    def _make_report(
        self,
        kill: Optional[KillReport],
        exit_code: Optional[int],
        root_left: bool,
        final: Optional[ResourceSample],
        duration_s: float,
    ) -> StopReport:
        leftover = set(kill.leftover if kill else ())
        if root_left and self.pid is not None:
            leftover.add(self.pid)
        pump = self._pump
        return StopReport(
            exit_code=exit_code,
            ignored_sigterm=bool(kill and kill.root_ignored_sigterm),
            killed_pids=kill.killed if kill else (),
            leftover_pids=tuple(sorted(leftover)),
            port_free=port_is_free(self._ready.host, self._ready.port) if self._ready else None,
            fd_leak=0,
            terminated_pids=kill.terminated if kill else ((self.pid,) if self.pid else ()),
            tree_pids=kill.members if kill else ((self.pid,) if self.pid else ()),
            duration_s=duration_s,
            cpu_s=final.cpu_s if final else 0.0,
            peak_rss_bytes=final.peak_rss_bytes if final else 0,
            peak_mem_bytes=final.peak_mem_bytes if final else 0,
            mem_kind=final.mem_kind if final else "rss",
            sample_interval_s=self._sampler.effective_interval_s if self._sampler else self._sample_interval_s,
            containment=kill.containment if kill else self.containment,
            containment_note=self._launched.cgroup_note if self._launched else "",
            output_bytes=(pump.stdout_log.total_bytes, pump.stderr_log.total_bytes) if pump else (0, 0),
            output_dropped_bytes=(pump.stdout_log.dropped_bytes + pump.stderr_log.dropped_bytes) if pump else 0,
            log_errors=tuple(self._log_errors),
        )

    def _with_fd_check(self, report: StopReport) -> StopReport:
        """Compare the harness's fds with those at start: count the new ones that still point
        at this server (its pipes, its log files, a TCP connection to its port)."""
        delta = fdaudit.open_fd_count() - self._fd_count_before
        if not self._fds_before:  # no /proc: only the raw count is available
            return replace(report, fd_delta=delta, fd_leak=max(delta, 0))
        folders = (str(self._log_dir), str(self._forensics_dir))
        pipes = self._launched.pipe_targets if self._launched else []
        ours = fdaudit.leaked(self._fds_before, pipes, self.port, folders)
        return replace(report, fd_delta=delta, fd_leak=len(ours), leaked_fds=ours)

    def _remove_own_log_dir(self) -> None:
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
