"""Run a production server as a child process on the harness's listening socket, and stop it.

The harness's server process binds the listener and prints the ready line before the strategy
runs, so a twin must serve on *that* socket: the child inherits it (`pass_fds`) and is told its
number (gunicorn `--bind fd://N`, uvicorn `--fd N`). The child stays in the server's process
group, so the supervisor's last resort (SIGKILL to the group) reaches it and its workers too.

Stopping is bounded: SIGTERM to the child (both servers then stop their workers gracefully,
within the grace period we pass them), a wait, then SIGKILL to the child and every descendant
found under /proc (a worker whose master died would otherwise linger until it noticed).

`wait_until_stopped` is the only place that knows how the server process asks a strategy to
stop (the Strategy base's `wait_for_stop`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

POLL_S = 0.1  # how often the child is checked while serving
GRACE_S = 1  # the grace period handed to the server for its own workers (seconds, an int for both CLIs)
STOP_WAIT_S = 2.5  # from SIGTERM to SIGKILL: the grace, plus the master's own clean-up


class TwinExited(RuntimeError):
    """The production server exited before it was asked to stop."""


def child_env(extra: Mapping[str, str]) -> Dict[str, str]:
    """The child's environment: ours, the twins' source tree importable, `extra`, and no
    settings that gunicorn or uvicorn would silently pick up from the environment."""
    env = dict(os.environ)
    for name in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        env.pop(name, None)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start(argv: Sequence[str], fd: int, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `python argv...` with the listening socket `fd` inherited; its output goes to our stderr."""
    return subprocess.Popen(
        [sys.executable, *argv],
        pass_fds=(fd,),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
        stderr=sys.stderr.fileno(),
    )


def wait_until_stopped(child: subprocess.Popen[bytes], wait_for_stop: Callable[[float], bool]) -> None:
    """Return once the server process is asked to stop; raise TwinExited if the child ends first.

    `wait_for_stop(timeout)` is the Strategy base's: it sleeps on the stop flag's wake-up fd for
    at most `timeout` and says whether the stop was asked for. Between two sleeps the child is
    checked, so a server that dies on its own ends `serve` within POLL_S. The caller's `finally`
    stops the child either way (and also if `ServerStop` is raised in here)."""
    while not wait_for_stop(POLL_S):
        status = child.poll()
        if status is not None:
            raise TwinExited("the server exited with status %d before it was asked to stop" % status)


def stop(child: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM the child, wait at most `wait_s`, then SIGKILL it and its descendants."""
    before = _descendants(child.pid)
    if child.poll() is None:
        _signal(child.pid, signal.SIGTERM)
        try:
            child.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass
    # Workers started since the first look, and any left behind by a master that died. A
    # process is identified by (pid, start time), so a recycled pid is never signalled.
    left = [proc for proc in set(before) | set(_descendants(child.pid)) if _stat(proc[0]) == proc]
    for pid, _started in left:
        _signal(pid, signal.SIGKILL)
    if child.poll() is None:
        _signal(child.pid, signal.SIGKILL)
        child.wait(wait_s)
    # They are not our children (init reaps them): watch /proc until they are gone, bounded.
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_stat(proc[0]) == proc for proc in left):
        time.sleep(0.02)


Proc = Tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> Optional[Proc]:
    """(pid, start time) of a live process, None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return (pid, int(fields[19]))


def _stat_fields(pid: int) -> Optional[List[bytes]]:
    """/proc/PID/stat from the state field on (the command name may hold spaces or ')')."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def _descendants(root: int) -> List[Proc]:
    """Every live process below `root`, from /proc (empty where there is no /proc)."""
    try:
        entries = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []
    children: Dict[int, List[Proc]] = {}
    for pid in entries:
        fields = _stat_fields(pid)
        if fields is None or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append((pid, int(fields[19])))
    found: List[Proc] = []
    todo = [root]
    while todo and len(found) < 10_000:  # bounded, whatever /proc says
        for proc in children.get(todo.pop(), []):
            found.append(proc)
            todo.append(proc[0])
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
