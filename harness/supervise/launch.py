"""Launch a server process with everything that lets the harness keep hold of its tree.

The server runs in a new session (start_new_session), so that its process group can be
signalled without touching the harness; in a cgroup of its own where one can be created (see
`cgroup`), moved there right after the exec, before it can have run any strategy code; with
the `HANGBENCH_RUN_ID` and `HANGBENCH_HARNESS` markers (see `markers`) and
`HANGBENCH_FORENSICS_DIR` (for the faulthandler fallback) in its environment; with the read end
of the watchdog pipe (see `watchdog_pipe`); and with both output pipes drained from the first
byte by the output pump (see `output`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

from ..errors import FAILED_TO_START
from ..server.faulthandler_hook import ENV_DIR as FORENSICS_ENV
from .cgroup import RunCgroup
from .markers import HARNESS_ENV, RUN_ID_ENV, harness_identity
from .output import CappedLog, OutputPump
from .reports import StartupFailure
from .watchdog_pipe import WATCHDOG_FD_ENV, WatchdogPipe

PathArg = Union[str, "os.PathLike[str]"]


@dataclass
class Launched:
    """A started server and what holds on to it."""

    popen: subprocess.Popen[bytes]
    pump: OutputPump
    watchdog: WatchdogPipe
    cgroup: Optional[RunCgroup]
    cgroup_note: str  # why there is no cgroup, if there is none
    pipe_targets: List[str] = field(default_factory=list)  # "pipe:[N]" of the harness's pipe ends


def launch(
    argv: Sequence[str],
    env: Optional[Mapping[str, str]],
    cwd: Optional[PathArg],
    run_id: str,
    forensics_dir: Path,
    log_paths: Sequence[Optional[Path]],
    use_cgroup: bool,
) -> Launched:
    """Start `argv` (`env` is the whole environment, default ours; the markers are added).
    `log_paths` are (stdout, stderr) log files, None for memory only. Raises StartupFailure
    (failed-to-start) if it cannot be executed, after undoing everything."""
    full_env = dict(os.environ if env is None else env)
    full_env[RUN_ID_ENV] = run_id
    full_env[HARNESS_ENV] = harness_identity()
    full_env[FORENSICS_ENV] = str(forensics_dir)
    watchdog = WatchdogPipe()
    full_env[WATCHDOG_FD_ENV] = str(watchdog.read_fd)
    group, note = RunCgroup.create(run_id) if use_cgroup else (None, "not asked for")
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=(watchdog.read_fd,),
        )
    except OSError as error:
        watchdog.close()
        if group is not None:
            group.remove()
        raise StartupFailure(
            FAILED_TO_START, "cannot execute %r: %s" % (argv[0] if argv else argv, error), ""
        ) from error
    watchdog.sent()
    if group is not None:
        failed = group.add(popen.pid)
        if failed:
            group, note = None, failed
    assert popen.stdout is not None and popen.stderr is not None
    out_fd, err_fd = popen.stdout.fileno(), popen.stderr.fileno()
    pump = OutputPump(out_fd, err_fd, CappedLog(log_paths[0]), CappedLog(log_paths[1]))
    fds = [out_fd, err_fd] + ([watchdog.write_fd] if watchdog.write_fd is not None else [])
    targets = ["pipe:[%d]" % os.fstat(fd).st_ino for fd in fds]
    return Launched(popen, pump, watchdog, group, note, targets)


def close(launched: Launched, join_timeout_s: float) -> List[str]:
    """After the tree is gone: stop the pump (closing the logs), close the pipes and the
    watchdog, remove the cgroup. Returns the errors met (one sentence each)."""
    launched.pump.stop(join_timeout_s)
    for stream in (launched.popen.stdout, launched.popen.stderr):
        if stream is not None:
            stream.close()
    launched.watchdog.close()
    errors = list(launched.pump.errors)
    if launched.cgroup is not None and not launched.cgroup.remove():
        errors.append("cannot remove the run's cgroup %s" % launched.cgroup.path)
    return errors
