"""Server-side watchdog: end the whole server tree when the harness that started it is gone.

A harness killed by SIGKILL cannot stop its server, so the server has to notice by itself. The
harness creates a pipe, keeps the write end, and passes the read end to the server (its number
in `HANGBENCH_WATCHDOG_FD`). `start_from_env()` starts a daemon thread that blocks in `read()`
on it; nothing is ever written, so the read returns only at EOF -- when the last write end is
closed, i.e. when the harness has exited, however it died. The thread then kills everything
the run started -- the processes of its run cgroup, its descendants, its process group, and
any process carrying the same run marker (`HANGBENCH_RUN_ID`) -- and `os._exit`s.

Why a pipe and not PR_SET_PDEATHSIG: the death signal fires when the parent *thread* exits,
and it cannot be armed for the grandchildren of a strategy that forks; a pipe is plain POSIX,
needs no cooperation from the strategy, and costs one sleeping thread.

Forked workers inherit the read end but not the thread (fork copies only the calling thread),
and a read end held elsewhere never delays the EOF; the fd is made non-inheritable so that
exec'd children (spawn workers) do not carry it. The variable is removed from `os.environ` so
that no child tries to arm a watchdog of its own.

Server-side module: standard library only, Python 3.8+. It never raises into the server.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from typing import Iterable, List, Optional, Set

WATCHDOG_FD_ENV = "HANGBENCH_WATCHDOG_FD"
RUN_ID_ENV = "HANGBENCH_RUN_ID"  # the marker every process of one server run inherits
CGROUP_PREFIX = "hangbench-"  # name prefix of the harness's per-run cgroups
_MAX_PROCS_SCANNED = 100_000


def start_from_env() -> Optional[threading.Thread]:
    """Start the watchdog thread if `HANGBENCH_WATCHDOG_FD` names a readable pipe; else None.

    Idempotent in effect: the variable is consumed by the first call."""
    value = os.environ.pop(WATCHDOG_FD_ENV, None)
    if not value:
        return None
    try:
        fd = int(value)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise ValueError("fd %d is not a pipe" % fd)
        os.set_inheritable(fd, False)
    except (ValueError, OSError) as error:
        _warn("watchdog not armed (%s=%r): %s" % (WATCHDOG_FD_ENV, value, error))
        return None
    thread = threading.Thread(target=_watch, args=(fd, os.getpid()), name="hangbench-watchdog", daemon=True)
    thread.start()
    return thread


def _watch(fd: int, owner: int) -> None:
    """Block until the harness's end of the pipe is closed, then end the tree."""
    for _ in range(1_000_000):  # bounded; each turn is one read() that returned data or EINTR
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break
    if os.getpid() != owner:  # cannot happen (threads do not survive fork); be safe anyway
        return
    _warn("the harness is gone (watchdog pipe closed); ending the server tree")
    end_tree()


def end_tree() -> None:
    """SIGKILL every process of this run, this process last; never returns."""
    me = os.getpid()
    marker = os.environ.get(RUN_ID_ENV, "")
    victims = _descendants(me) | (_marked(marker.encode()) if marker else set())
    victims.discard(me)
    for pid in sorted(victims):
        _kill(pid)
    _kill_cgroup()
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the server leads its group: kills us too
    except OSError:
        pass
    os._exit(70)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _kill_cgroup() -> None:
    """Write cgroup.kill of our own cgroup if it is a harness run cgroup (cgroup v2)."""
    path = _own_cgroup_dir()
    if path is None:
        return
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        for pid in _read_pids(os.path.join(path, "cgroup.procs")):
            if pid != os.getpid():
                _kill(pid)


def _own_cgroup_dir() -> Optional[str]:
    relative = None
    for line in _read("/proc/self/cgroup").splitlines():
        if line.startswith("0::"):
            relative = line[3:].strip()
    if not relative or not os.path.basename(relative).startswith(CGROUP_PREFIX):
        return None
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            mount_point = left.split()[4]
            return mount_point.rstrip("/") + relative
    return None


def _descendants(root: int) -> Set[int]:
    children: dict = {}
    for pid in _pids():
        fields = _read("/proc/%d/stat" % pid).rpartition(")")[2].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(pid)
    found: Set[int] = set()
    frontier: List[int] = [root]
    for _ in range(_MAX_PROCS_SCANNED):
        if not frontier:
            break
        pid = frontier.pop()
        for child in children.get(pid, ()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _marked(marker_value: bytes) -> Set[int]:
    wanted = RUN_ID_ENV.encode() + b"=" + marker_value
    found = set()
    for pid in _pids():
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if wanted in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            continue
    return found


def _pids() -> Iterable[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(n) for n in names[:_MAX_PROCS_SCANNED] if n.isdigit()]


def _read_pids(path: str) -> List[int]:
    return [int(n) for n in _read(path).split() if n.isdigit()]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _warn(message: str) -> None:
    try:
        sys.stderr.write("hangbench watchdog: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
