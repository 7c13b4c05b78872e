"""Start one server process, watch it, find out where it is stuck, and stop it cleanly.

`ServerProcess` is the only way the harness runs a server. Its contract with the orchestration:

* `start()` returns only once the server has printed its ready line (one JSON object with
  `"event": "listening"` on stdout) and, by default, answered an HTTP request; otherwise it
  raises `StartupFailure` with a `status` the report can tabulate -- `failed-to-start` (exited
  before the ready line: an import error, a bad option), `crashed` (exited after it), or
  `not-ready` (alive but silent, or listening but never answering) -- and has already stopped
  whatever it started. So after `start()` either a server is answering or nothing is left.
* While it runs, a sampler thread records CPU (user+system over the whole tree, including
  processes that have exited since) and RSS (sum over the tree, and its peak).
* `stop()` ends the whole tree, however it behaves (see `harness.supervise.proctree`), and returns a
  `StopReport` that checks the promises: nothing left, the port is free again, and the
  harness itself did not leak file descriptors.

Why it is shaped so:

* The ready line is read from a non-blocking pipe with a selector and a deadline, never with a
  blocking readline: a server that prints half a line and hangs must not hang the harness.
  Afterwards a drain thread keeps stdout flowing into a log file, and stderr goes straight to a
  file, so a chatty server can never block on a full pipe.
* The server runs in a new session (start_new_session) so that its process group can be
  signalled without touching the harness, and carries a `HANGBENCH_RUN_ID` marker so that a
  descendant that detaches itself is still found. The harness becomes a child subreaper so
  that such a descendant is reparented to it rather than to init.
* `HANGBENCH_FORENSICS_DIR` is set for the server so that `harness.server.faulthandler_hook` can dump
  stacks on SIGUSR2 when py-spy is unavailable.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import psutil
from loguru import logger

from ..server.faulthandler_hook import ENV_DIR as FORENSICS_ENV
from . import forensics as forensics_mod
from .proctree import (
    RUN_ID_ENV,
    KillReport,
    ProcessTree,
    ProcTreeError,
    enable_subreaper,
    reap_orphans,
)

PathArg = Union[str, "os.PathLike[str]"]

FAILED_TO_START = "failed-to-start"
CRASHED = "crashed"
NOT_READY = "not-ready"
PROBES = ("accept", "http", "tcp")  # see ServerProcess.wait_answering()

_MAX_STDOUT_LINE = 1 << 20  # a "ready line" longer than this is not one
_SELECT_SLICE_S = 0.1
_PROBE_ATTEMPT_MAX_S = 2.0
_PROBE_PAUSE_MAX_S = 0.2
_ACCEPT_POLL_S = 0.05
_REAP_ROOT_TIMEOUT_S = 5.0
_THREAD_JOIN_TIMEOUT_S = 2.0
_TAIL_KEPT_LINES = 200
_KILL_CAPTURE_TIMEOUT_S = 10.0  # forensics of a server that ignored SIGTERM, before SIGKILL


class SupervisorError(Exception):
    """The supervisor was used wrongly (e.g. started twice); the message says how to fix it."""


class StartupFailure(Exception):
    """The server did not become ready. `status` is one of FAILED_TO_START, CRASHED, NOT_READY.

    By the time this is raised the server tree has been stopped; `stop_report` says how.
    """

    def __init__(
        self,
        status: str,
        message: str,
        stderr_tail: str,
        exit_code: Optional[int] = None,
        stop_report: Optional[StopReport] = None,
        stuck: Optional[str] = None,
    ) -> None:
        super().__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code
        self.stop_report = stop_report
        self.stuck = stuck  # forensics summary for a not-ready server that was alive, if captured


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ReadyInfo:
    """The server's ready line, as parsed."""

    host: str
    port: int
    pid: int
    strategy: Optional[str]
    python: Optional[str]
    elapsed_s: float  # from Popen to the ready line
    raw: Dict[str, Any] = field(default_factory=dict, compare=False)

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the ready line as printed (`ready["port"]`)."""
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True)
class AnswerCheck:
    """How the server first responded to a readiness probe."""

    probe: str  # "accept", "http" or "tcp"
    elapsed_s: float
    attempts: int
    outcome: str  # "answered" (bytes came back), "closed" (accepted, then closed or reset),
    #               "accepted" (the application accepted the connection) or "connected" (tcp)
    first_line: str = ""  # the first line of the answer, if any
    is_http: bool = False  # the answer began with an HTTP status line


@dataclass(frozen=True)
class ResourceSample:
    at_s: float  # seconds since the server was started
    cpu_s: float  # user+system CPU of every process of the tree so far, exited ones included
    rss_bytes: int  # resident memory summed over the live processes of the tree
    peak_rss_bytes: int  # the largest rss_bytes seen so far
    n_processes: int


@dataclass(frozen=True)
class StopReport:
    exit_code: Optional[int]  # of the server process; negative = killed by that signal
    ignored_sigterm: bool  # the server process was still alive when the grace period ran out
    killed_pids: Tuple[int, ...]  # processes that needed SIGKILL
    leftover_pids: Tuple[int, ...]  # processes still alive afterwards: should be empty
    port_free: Optional[bool]  # the port can be bound again; None if no port was ever reported
    fd_leak: int  # fds of the harness opened since start that still refer to this server
    #              (its pipe, its log files, a connection to its port); should be 0
    terminated_pids: Tuple[int, ...] = ()  # processes of the tree that ended without SIGKILL
    tree_pids: Tuple[int, ...] = ()  # every process ever seen in the tree
    duration_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    fd_delta: int = 0  # all of the harness's open fds after stop minus before start: other
    #                    components (a load generator's event loop) may move this one
    leaked_fds: Tuple[str, ...] = ()  # what the fd_leak fds point to, e.g. "pipe:[123]"

    @property
    def clean(self) -> bool:
        """Nothing left behind: no process, the port is free, no fd leaked."""
        return not self.leaks()

    def leaks(self) -> List[str]:
        """One sentence per thing left behind (empty when clean)."""
        found = []
        if self.leftover_pids:
            found.append(
                "%d process(es) survived SIGKILL: %s"
                % (len(self.leftover_pids), ", ".join(map(str, self.leftover_pids)))
            )
        if self.port_free is False:
            found.append("the server's port is still bound after stop")
        if self.fd_leak > 0:
            found.append(
                "the harness still holds %d fd(s) of the server: %s" % (self.fd_leak, ", ".join(self.leaked_fds))
            )
        return found

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the supervisor


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
        sample_interval_s: float = 0.5,
        forensics_dir: Optional[PathArg] = None,
        capture_on_failure: bool = True,
        default_grace_s: float = 5.0,
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
        self.run_id = uuid.uuid4().hex[:16]
        self._popen: Optional[subprocess.Popen[bytes]] = None
        self._tree: Optional[ProcessTree] = None
        self._ready: Optional[ReadyInfo] = None
        self._report: Optional[StopReport] = None
        self._stderr_file: Optional[Any] = None
        self._stdout_log: Optional[Any] = None
        self._fds_before: Dict[int, str] = {}
        self._fd_count_before = 0
        self._pipe_target = ""
        self._started_at = 0.0
        self._peak_rss = 0
        self._last_sample: Optional[ResourceSample] = None
        self._sample_lock = threading.Lock()
        self._stop_threads = threading.Event()
        self._threads: List[threading.Thread] = []
        self._tail_cache: Optional[List[str]] = None
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

    def exit_code(self) -> Optional[int]:
        """The server process's exit code if it has exited (negative: killed by a signal)."""
        return self._peek_exit() if self._popen is not None else None

    def alive(self) -> bool:
        return self._popen is not None and self._peek_exit() is None

    def _peek_exit(self) -> Optional[int]:
        """The exit code if the server process has exited, WITHOUT reaping it: the zombie keeps
        its CPU times readable for the final sample, and its session id reserved (see
        proctree), until stop() reaps it through Popen."""
        assert self._popen is not None
        if self._popen.returncode is not None or not hasattr(os, "WNOWAIT"):
            return self._popen.poll()
        try:
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self._popen.poll()
        if info is None:
            return None
        if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return -info.si_status
        return info.si_status

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

        `env` is the whole environment, as for Popen (default: ours); HANGBENCH_RUN_ID and
        HANGBENCH_FORENSICS_DIR are added. Raises StartupFailure after stopping the tree.
        """
        if self._popen is not None:
            raise SupervisorError("this ServerProcess was already started; use a new one per server run")
        if probe is not None and probe not in PROBES:
            raise SupervisorError("probe must be one of %s or None (got %r)" % (", ".join(PROBES), probe))
        enable_subreaper()
        self._fds_before = _fd_targets()
        self._fd_count_before = _open_fd_count()
        self._started_at = time.monotonic()
        deadline = self._started_at + ready_timeout_s
        self._spawn(list(argv), env, cwd)
        self._ready = self._read_ready_line(deadline, ready_timeout_s)
        self._start_threads()
        if probe is not None:
            self.wait_answering(max(deadline - time.monotonic(), 0.0), probe=probe)
        else:
            self._fail_if_exited()
        return self._ready

    def _spawn(self, argv: List[str], env: Optional[Mapping[str, str]], cwd: Optional[PathArg]) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._forensics_dir.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ if env is None else env)
        full_env[RUN_ID_ENV] = self.run_id
        full_env[FORENSICS_ENV] = str(self._forensics_dir)
        self._stderr_file = open(self.stderr_path, "ab")
        self._stdout_log = open(self.stdout_path, "ab")
        try:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr_file,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            self._close_files()
            tail = self.stderr_tail()
            self._remove_own_log_dir()
            raise StartupFailure(
                FAILED_TO_START, "cannot execute %r: %s" % (argv[0] if argv else argv, error), tail
            ) from error
        os.set_blocking(self._popen.stdout.fileno(), False)  # type: ignore[union-attr]
        self._pipe_target = "pipe:[%d]" % os.fstat(self._popen.stdout.fileno()).st_ino  # type: ignore[union-attr]
        try:
            self._tree = ProcessTree(self._popen.pid, self.run_id)
        except ProcTreeError as error:  # cannot happen while the root is an unreaped child
            logger.warning("cannot track the process tree of server {}: {}", self._popen.pid, error)
            self._tree = None

    def _read_ready_line(self, deadline: float, timeout_s: float) -> ReadyInfo:
        outcome = self._await_ready_line(deadline, timeout_s)
        if isinstance(outcome, ReadyInfo):
            return outcome
        self._fail(*outcome)  # outside the selector, so that stop() counts fds correctly

    def _await_ready_line(self, deadline: float, timeout_s: float) -> Union[ReadyInfo, Tuple[str, str]]:
        """The ready line, or (status, message) saying why there is none."""
        assert self._popen is not None and self._popen.stdout is not None
        fd = self._popen.stdout.fileno()
        buffer = b""
        eof = False
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                pause = max(0.0, min(_SELECT_SLICE_S, remaining))
                if eof:
                    time.sleep(pause)  # stdout closed but the process lives on: wait for exit
                elif selector.select(timeout=pause):
                    chunk = _read_available(fd)
                    eof = chunk == b""
                    buffer += chunk or b""
                exited = self._peek_exit() is not None
                if exited:
                    buffer += _drain_available(fd)  # a descendant may hold stdout open: no EOF
                ready, buffer = self._scan_lines(buffer)
                if ready is not None:
                    return ready
                if exited:
                    return FAILED_TO_START, (
                        "the server exited with %s before it printed its ready line" % _describe_exit(self._peek_exit())
                    )
                if remaining <= 0:
                    return NOT_READY, "no ready line on stdout within %.1f s (the process is alive)" % timeout_s
                if len(buffer) > _MAX_STDOUT_LINE:
                    return NOT_READY, "more than %d bytes on stdout without a newline" % _MAX_STDOUT_LINE

    def _scan_lines(self, buffer: bytes) -> Tuple[Optional[ReadyInfo], bytes]:
        """Look for the ready line among complete lines; other lines go to stdout.log."""
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            ready = self._parse_ready(line)
            if ready is not None:
                self._log_stdout(buffer)  # whatever followed the ready line
                return ready, b""
            self._log_stdout(line + b"\n")
        return None, buffer

    def _parse_ready(self, line: bytes) -> Optional[ReadyInfo]:
        try:
            message = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("event") != "listening":
            return None
        try:
            return ReadyInfo(
                host=str(message.get("host", "127.0.0.1")),
                port=int(message["port"]),
                pid=int(message.get("pid", self.pid or 0)),
                strategy=message.get("strategy"),
                python=message.get("python"),
                elapsed_s=time.monotonic() - self._started_at,
                raw=message,
            )
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring malformed ready line (needs an integer 'port'): {!r}", line[:200])
            return None

    # ------------------------------------------------------------------ readiness probe

    def wait_answering(self, timeout_s: float, probe: str = "accept") -> AnswerCheck:
        """Wait until the server responds to `probe` on its port, each attempt with its own
        timeout. A server that exits meanwhile is `crashed`, one that never responds `not-ready`.

        Probes, from loosest to strictest:
        * "tcp": a connect succeeds. The kernel completes it from the listen backlog, so this
          only proves that a socket listens.
        * "accept" (default): after a GET /, the server answers, closes or resets the
          connection, or -- seen in /proc/net/tcp, where a connection gets an inode only when
          accept() takes it -- its application accepted it. So a server that accepts and then
          hangs (the article's broken strategies) is ready, and its hangs get measured; one
          that never accepts is not-ready.
        * "http": the server answers GET / with at least one line (any bytes count; see
          `AnswerCheck.is_http`).
        """
        if self._ready is None:
            raise SupervisorError("wait_answering() needs a started server: call start() first")
        if probe not in PROBES:
            raise SupervisorError("probe must be one of %s (got %r)" % (", ".join(PROBES), probe))
        started = time.monotonic()
        deadline = started + timeout_s
        last_error = "no attempt made (timeout %.1f s)" % timeout_s
        for attempt in range(1, 100_000):
            self._fail_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            result, last_error = _probe_once(
                self._ready.host, self._ready.port, probe, min(remaining, _PROBE_ATTEMPT_MAX_S)
            )
            if result is not None:
                outcome, first_line = result
                return AnswerCheck(
                    probe, time.monotonic() - started, attempt, outcome, first_line, first_line.startswith("HTTP/")
                )
            time.sleep(max(0.0, min(0.02 * attempt, _PROBE_PAUSE_MAX_S, deadline - time.monotonic())))
        self._fail_if_exited()
        self._fail(
            NOT_READY,
            "listening on %s:%d but no response to the %s probe within %.1f s: %s"
            % (self._ready.host, self._ready.port, probe, timeout_s, last_error),
        )

    def _fail_if_exited(self) -> None:
        assert self._popen is not None
        code = self._peek_exit()
        if code is not None:
            after = time.monotonic() - self._started_at - (self._ready.elapsed_s if self._ready else 0.0)
            self._fail(
                CRASHED,
                "the server exited with %s after its ready line (noticed %.2f s later)" % (_describe_exit(code), after),
            )

    def _fail(self, status: str, message: str) -> NoReturn:
        """Stop the tree (capturing where a live server is stuck first) and raise."""
        stuck = None
        if status == NOT_READY and self._capture_on_failure and self.alive():
            try:
                with _pending_request(self._ready):
                    stuck = self.capture_forensics(timeout_s=10.0).summary
                message += "; stuck: " + stuck
            except Exception as error:
                logger.warning("forensics of not-ready server failed: {}", error)
        report = self.stop(grace_s=min(self._default_grace_s, 2.0))
        raise StartupFailure(status, message, self.stderr_tail(), report.exit_code, report, stuck)

    # ------------------------------------------------------------------ watching

    def stderr_tail(self, n_lines: int = 20) -> str:
        """The last `n_lines` lines the server wrote to stderr (also after stop())."""
        if self._tail_cache is not None:
            return "\n".join(self._tail_cache[-n_lines:]) if n_lines > 0 else ""
        return "\n".join(_tail_lines(self.stderr_path, n_lines))

    def sample(self) -> ResourceSample:
        """Measure the tree now: CPU so far, RSS now and at its peak."""
        if self._tree is None:
            return ResourceSample(0.0, 0.0, 0, 0, 0)
        usage = self._tree.usage()
        with self._sample_lock:
            self._peak_rss = max(self._peak_rss, usage.rss_bytes)
            self._last_sample = ResourceSample(
                time.monotonic() - self._started_at, usage.cpu_s, usage.rss_bytes, self._peak_rss, usage.n_processes
            )
            return self._last_sample

    @property
    def last_sample(self) -> Optional[ResourceSample]:
        """The most recent sample (background sampler or `sample()`), without measuring."""
        with self._sample_lock:
            return self._last_sample

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
        self._forensics = result
        return result

    @property
    def forensics(self) -> Optional[forensics_mod.Forensics]:
        """The most recent capture, or None."""
        return self._forensics

    def _start_threads(self) -> None:
        self._threads = [
            threading.Thread(target=self._sampler, name="hangbench-sampler-%s" % self.pid, daemon=True),
            threading.Thread(target=self._drain_stdout, name="hangbench-stdout-%s" % self.pid, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _sampler(self) -> None:
        """Sample every interval until stopped or the tree is empty."""
        warned = False
        while not self._stop_threads.is_set():
            try:
                if self.sample().n_processes == 0:
                    return
            except Exception as error:
                if not warned:
                    logger.warning("resource sampling of server {} failed: {}", self.pid, error)
                    warned = True
            self._stop_threads.wait(self._sample_interval_s)

    def _drain_stdout(self) -> None:
        """Copy the server's stdout to stdout.log until EOF or stop()."""
        assert self._popen is not None and self._popen.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._popen.stdout, selectors.EVENT_READ)
            while not self._stop_threads.is_set():
                if not selector.select(timeout=_SELECT_SLICE_S):
                    continue
                chunk = _read_available(self._popen.stdout.fileno())
                if chunk == b"":
                    return
                self._log_stdout(chunk or b"")

    def _log_stdout(self, data: bytes) -> None:
        if data and self._stdout_log is not None and not self._stdout_log.closed:
            self._stdout_log.write(data)
            self._stdout_log.flush()

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
        self._stop_threads.set()
        for thread in self._threads:
            thread.join(_THREAD_JOIN_TIMEOUT_S)
        final = self._safe_sample(before_kill)  # CPU of processes seen exiting during the kill
        self._close_files()
        report = self._make_report(kill, exit_code, root_left, final, time.monotonic() - started)
        self._cache_tail_and_clean_up()
        report = self._with_fd_check(report)
        if not report.clean:
            logger.warning("server {} left something behind: {}", self.pid, report)
        return report

    def _capture_before_kill(self) -> None:
        """The server ignored SIGTERM: record where it is stuck, unless a capture exists."""
        if self._forensics is None:
            self._forensics = forensics_mod.capture(
                self.pids(), self._forensics_out, _KILL_CAPTURE_TIMEOUT_S, faulthandler_dir=str(self._forensics_dir)
            )

    def _reap_root(self) -> Tuple[Optional[int], bool]:
        assert self._popen is not None
        try:
            return self._popen.wait(timeout=_REAP_ROOT_TIMEOUT_S), False
        except subprocess.TimeoutExpired:
            logger.error("server pid {} did not exit after SIGKILL", self._popen.pid)
            return None, True

    def _safe_sample(self, fallback: Optional[ResourceSample]) -> Optional[ResourceSample]:
        if self._tree is None:
            return fallback
        try:
            return self.sample()
        except Exception as error:
            logger.warning("resource sample of server {} failed: {}", self.pid, error)
            return fallback

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
        )

    def _with_fd_check(self, report: StopReport) -> StopReport:
        """Compare the harness's fds with those at start: count the new ones that still point
        at this server (its stdout pipe, its log files, a TCP connection to its port)."""
        delta = _open_fd_count() - self._fd_count_before
        after = _fd_targets()
        if not after:  # no /proc: only the raw count is available
            return replace(report, fd_delta=delta, fd_leak=max(delta, 0))
        new = [target for fd, target in after.items() if self._fds_before.get(fd) != target]
        ours = tuple(sorted(t for t in new if self._points_at_server(t)))
        return replace(report, fd_delta=delta, fd_leak=len(ours), leaked_fds=ours)

    def _points_at_server(self, target: str) -> bool:
        if target == self._pipe_target:
            return True
        if target.startswith("socket:[") and self._ready is not None:
            port = self._ready.port
            inodes = {e.inode for e in forensics_mod.tcp_entries(os.getpid()) if port in (e.local_port, e.remote_port)}
            return target[8:-1] in inodes
        folders = {os.path.abspath(self._log_dir), os.path.abspath(self._forensics_dir)}
        return any(target.startswith(folder + os.sep) for folder in folders)

    def _close_files(self) -> None:
        if self._popen is not None and self._popen.stdout is not None:
            self._popen.stdout.close()
        for handle in (self._stderr_file, self._stdout_log):
            if handle is not None and not handle.closed:
                handle.close()

    def _cache_tail_and_clean_up(self) -> None:
        self._tail_cache = _tail_lines(self.stderr_path, _TAIL_KEPT_LINES)
        self._remove_own_log_dir()

    def _remove_own_log_dir(self) -> None:
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)


# --------------------------------------------------------------------------- helpers


def port_is_free(host: str, port: int) -> bool:
    """True if `host:port` can be bound now (SO_REUSEADDR, so TIME_WAIT leftovers do not count:
    only a process still holding the port does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _probe_once(host: str, port: int, probe: str, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    """((outcome, first line), "") on success, (None, why not) otherwise."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            if probe == "tcp":
                return ("connected", ""), ""
            conn.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host.encode(), port))
            if probe == "http":
                return _await_answer(conn, timeout_s)
            return _await_accept(conn, port, timeout_s)
    except socket.timeout:
        return None, "no answer within %.1f s" % timeout_s
    except OSError as error:
        return None, "%s: %s" % (type(error).__name__, error.strerror or error)


def _await_answer(conn: socket.socket, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    data = _recv_first_line(conn)
    if not data:
        return None, "the server closed the connection without answering"
    return ("answered", _first_line(data)), ""


def _await_accept(conn: socket.socket, port: int, timeout_s: float) -> Tuple[Optional[Tuple[str, str]], str]:
    """Poll until the server answers, closes, resets, or has accepted the connection."""
    client_port = conn.getsockname()[1]
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / _ACCEPT_POLL_S) + 2):
        readable, _, _ = select.select([conn], [], [], _ACCEPT_POLL_S)
        if readable:
            try:
                data = _recv_first_line(conn)
            except ConnectionResetError:
                return ("closed", ""), ""
            return (("answered", _first_line(data)) if data else ("closed", "")), ""
        if _accepted(port, client_port):
            return ("accepted", ""), ""
        if time.monotonic() >= deadline:
            break
    return None, "connected, but the server did not accept the connection within %.1f s" % timeout_s


def _accepted(server_port: int, client_port: int) -> bool:
    """True if the server side of our connection has been accept()ed: in /proc/net/tcp a
    connection still in the listen queue has inode 0 (Linux; False elsewhere)."""
    for entry in forensics_mod.tcp_entries(os.getpid()):
        if entry.local_port == server_port and entry.remote_port == client_port:
            return entry.inode != "0"
    return False


def _first_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")[:200]


@contextlib.contextmanager
def _pending_request(ready: Optional[ReadyInfo]) -> Iterator[None]:
    """Hold a GET / open while the block runs, so that forensics of a server that does not
    answer show what it does with a request (the probes have given up by then)."""
    conn = None
    if ready is not None:
        try:
            conn = socket.create_connection((ready.host, ready.port), timeout=1.0)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (ready.host.encode(), ready.port))
            time.sleep(0.1)  # let the server pick it up
        except OSError:
            pass
    try:
        yield
    finally:
        if conn is not None:
            conn.close()


def _recv_first_line(conn: socket.socket) -> bytes:
    """Read until the first newline, EOF or 4 KiB. Not until EOF: a server that delays its FIN
    (the article's naive server does) still answers."""
    data = b""
    for _ in range(64):
        chunk = conn.recv(4096)
        data += chunk
        if not chunk or b"\n" in data or len(data) >= 4096:
            break
    return data


def _read_available(fd: int) -> Optional[bytes]:
    """Bytes from a non-blocking fd; b"" at EOF; None if nothing is available right now."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def _drain_available(fd: int) -> bytes:
    """Everything readable right now from a non-blocking fd (bounded)."""
    data = b""
    for _ in range(64):
        chunk = _read_available(fd)
        if not chunk:
            break
        data += chunk
    return data


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "code %d" % code


def _tail_lines(path: Path, n_lines: int, max_bytes: int = 64 * 1024) -> List[str]:
    if n_lines <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return list(deque(text.splitlines(), maxlen=n_lines))


def _fd_targets() -> Dict[int, str]:
    """fd -> what it points to ("pipe:[12]", "socket:[34]", a path), for this process; {}
    without /proc."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    targets = {}
    for name in names:
        try:
            targets[int(name)] = os.readlink("/proc/self/fd/" + name)
        except (OSError, ValueError):
            continue  # the fd listdir itself used, already closed
    return targets


def _open_fd_count() -> int:
    return int(psutil.Process().num_fds())
