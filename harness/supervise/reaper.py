"""The harness as a child subreaper: become one, reap orphans safely, signal identified processes.

A server's descendants are not all reachable through parent -> child links at the end of a run:
a worker whose parent died, or a daemon that double-forked and called setsid(), is reparented.
`enable_subreaper()` makes the harness a *child subreaper* (Linux `PR_SET_CHILD_SUBREAPER`), so
such orphans are reparented to the harness instead of to init: they stay visible, and the
harness becomes responsible for reaping them.

Reaping must not steal exit statuses. The root process of a server belongs to a
`subprocess.Popen` that the supervisor waits for; load generators own other children. So this
module never calls `waitpid(-1)`: it reaps only pids registered as non-root members of a tree,
after checking their identity (pid + creation time). Signals likewise go only to a
`psutil.Process` still identified as the process that was found, never to a recycled pid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

import psutil
from loguru import logger

from .markers import RUN_ID_ENV

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_POLL_S = 0.05


class ProcTreeError(Exception):
    """The process tree cannot be managed as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- subreaper


def enable_subreaper() -> bool:
    """Make this process a child subreaper; return True if it is one afterwards.

    Idempotent. On a platform without PR_SET_CHILD_SUBREAPER it logs a warning once and returns
    False: escaped processes are then reparented to init and found only by the run-id scan.
    """
    global _subreaper_warned
    if not sys.platform.startswith("linux"):
        if not _subreaper_warned:
            logger.warning(
                "child subreaper is Linux-only; processes that detach from a server "
                "are found only by their {} marker on {}",
                RUN_ID_ENV,
                sys.platform,
            )
            _subreaper_warned = True
        return False
    libc = _libc()
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise ProcTreeError("prctl(PR_SET_CHILD_SUBREAPER) failed: %s" % os.strerror(err))
    return is_subreaper()


def is_subreaper() -> bool:
    """True if this process is a child subreaper (always False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    value = ctypes.c_int(0)
    if _libc().prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
        return False
    return value.value != 0


_subreaper_warned = False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


# --------------------------------------------------------------------------- liveness


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie, and still the same process (pid + creation time)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def exists(proc: psutil.Process) -> bool:
    """Still the process we identified (pid + creation time), zombie or not."""
    try:
        return bool(proc.is_running())
    except psutil.Error:
        return False


def send_signal(proc: psutil.Process, signum: int) -> bool:
    """Send `signum` if `proc` is still the process we identified; True if sent."""
    try:
        if not proc.is_running():  # also detects a recycled pid
            return False
        proc.send_signal(signum)
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout_s: float) -> List[psutil.Process]:
    """Poll until none of `procs` is alive or `timeout_s` passes; return those still alive.

    Never waits on a child (psutil's wait() would reap it and steal a Popen's status)."""
    pending = list(procs)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [p for p in pending if alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        reap_orphans()
        time.sleep(_POLL_S)


# --------------------------------------------------------------------------- reaping

# Non-root tree members that the harness may reap: pid -> creation time. Module-level because
# an orphan outlives the tree object that found it.
_reapable: Dict[int, float] = {}
_reapable_lock = threading.Lock()


def register_reapable(proc: psutil.Process) -> None:
    try:
        created = proc.create_time()
    except psutil.Error:
        return
    with _reapable_lock:
        _reapable[proc.pid] = created


def reap_orphans() -> Tuple[int, ...]:
    """Reap the zombie children of the harness that are known non-root tree members.

    Non-blocking; returns the pids reaped. Never touches a pid that some Popen or
    multiprocessing object may own: only pids registered by a ProcessTree, and only while
    their creation time still matches.
    """
    with _reapable_lock:
        candidates = list(_reapable.items())
    reaped: List[int] = []
    for pid, created in candidates:
        outcome = _reap_one(pid, created)
        if outcome == "reaped":
            reaped.append(pid)
        if outcome in ("reaped", "gone"):
            with _reapable_lock:
                if _reapable.get(pid) == created:
                    del _reapable[pid]
    return tuple(reaped)


def _reap_one(pid: int, created: float) -> str:
    """'reaped', 'gone' (no longer exists as that process), or 'pending'."""
    try:
        proc = psutil.Process(pid)
        if proc.create_time() != created:
            return "gone"
        if proc.ppid() != os.getpid() or proc.status() != psutil.STATUS_ZOMBIE:
            return "pending"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:
        return "pending"
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "gone"
    return "reaped" if done == pid else "pending"


def peek_exit(popen: subprocess.Popen[bytes]) -> Optional[int]:
    """The exit code if `popen`'s process has exited, WITHOUT reaping it: the zombie keeps its
    CPU times readable for a final sample, and its session id reserved (see proctree), until
    the owner reaps it through Popen. Negative: killed by that signal."""
    if popen.returncode is not None or not hasattr(os, "WNOWAIT"):
        return popen.poll()
    try:
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return popen.poll()
    if info is None:
        return None
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return -info.si_status
    return info.si_status
