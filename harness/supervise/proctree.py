"""Find every process a server started, however it tried to hide, and end them all.

The harness promises that every process it starts is reaped, even one that detaches itself
(DESIGN.md §4). Three facts shape this module:

* A server's descendants are not all reachable through the parent -> child links at the end of
  a run. A worker whose parent died, or a daemon that double-forked and called setsid(), is
  reparented. `enable_subreaper()` makes the harness a *child subreaper* (Linux
  `PR_SET_CHILD_SUBREAPER`), so such orphans are reparented to the harness instead of to init:
  they stay visible, and the harness becomes responsible for reaping them.
* A process can therefore be a member of a server's tree without being its descendant any more.
  `ProcessTree` finds members four ways and never forgets one: descendants of the root and of
  every member seen before (so an escapee seen once stays tracked); children of the harness in
  the root's session; children of the harness whose environment carries the tree's run id
  (`HANGBENCH_RUN_ID`, which survives fork, setsid and exec unless scrubbed); and, before a
  kill, every process on the machine in the root's session or carrying the run id. Members are
  held as `psutil.Process` objects, whose identity is (pid, creation time): a pid recycled by
  an unrelated process is never signalled.
* Reaping must not steal exit statuses. The root process belongs to a `subprocess.Popen` that
  the supervisor waits for; load generators own other children. So this module never calls
  `waitpid(-1)`: it reaps only pids it has identified as non-root members of a tree, after
  checking their identity. See `reap_orphans()`.

Killing follows gunicorn's arbiter: SIGTERM to the root (it stops its own workers), wait the
grace period, SIGKILL the root if it ignored SIGTERM, then SIGTERM -> short wait -> SIGKILL for
whatever members remain, in bounded rounds that also catch processes forked meanwhile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

import psutil
from loguru import logger

RUN_ID_ENV = "HANGBENCH_RUN_ID"

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_POLL_S = 0.05
_KILL_ROUNDS = 10  # SIGKILL rounds; each catches processes forked since the last one
_KILL_ROUND_WAIT_S = 1.0
_ORPHAN_GRACE_MAX_S = 1.0  # SIGTERM grace for members left after the root is gone


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


# --------------------------------------------------------------------------- /proc scan


@dataclass(frozen=True)
class _Stat:
    ppid: int
    pgrp: int
    session: int
    state: str


def _scan() -> Dict[int, _Stat]:
    """pid -> (ppid, pgrp, session, state) of every process, in one pass over /proc."""
    if not os.path.isdir("/proc/self/task"):
        return _scan_psutil()
    table: Dict[int, _Stat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def _read_stat(pid: int) -> Optional[_Stat]:
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return _Stat(ppid=int(fields[1]), pgrp=int(fields[2]), session=int(fields[3]), state=fields[0].decode())
    except (IndexError, ValueError):
        return None


def _scan_psutil() -> Dict[int, _Stat]:
    table: Dict[int, _Stat] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        try:
            pgrp = os.getpgid(proc.pid)
            session = os.getsid(proc.pid)
        except OSError:
            continue
        zombie = proc.info["status"] == psutil.STATUS_ZOMBIE
        table[proc.pid] = _Stat(proc.info["ppid"] or 0, pgrp, session, "Z" if zombie else "S")
    return table


def _has_marker(pid: int, marker: bytes) -> bool:
    """True if /proc/PID/environ contains exactly `marker` (b"NAME=value")."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


# --------------------------------------------------------------------------- liveness


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie, and still the same process (pid + creation time)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _exists(proc: psutil.Process) -> bool:
    """Still the process we identified (pid + creation time), zombie or not."""
    try:
        return bool(proc.is_running())
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, signum: int) -> bool:
    """Send `signum` if `proc` is still the process we identified; True if sent."""
    try:
        if not proc.is_running():  # also detects a recycled pid
            return False
        proc.send_signal(signum)
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def _wait_gone(procs: Iterable[psutil.Process], timeout_s: float) -> List[psutil.Process]:
    """Poll until none of `procs` is alive or `timeout_s` passes; return those still alive.

    Never waits on a child (psutil's wait() would reap it and steal a Popen's status)."""
    pending = list(procs)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [p for p in pending if _alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        reap_orphans()
        time.sleep(_POLL_S)


# --------------------------------------------------------------------------- reaping

# Non-root tree members that the harness may reap: pid -> creation time. Module-level because
# an orphan outlives the tree object that found it.
_reapable: Dict[int, float] = {}
_reapable_lock = threading.Lock()


def _register_reapable(proc: psutil.Process) -> None:
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


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Usage:
    """Resources of a tree at one instant. `cpu_s` includes members that have exited (their
    last-seen CPU time); `rss_bytes` counts live members only."""

    cpu_s: float
    rss_bytes: int
    n_processes: int


@dataclass(frozen=True)
class KillReport:
    """What ending a tree took."""

    root_ignored_sigterm: bool  # the root was still alive when its grace period ran out
    terminated: Tuple[int, ...]  # pids that exited after SIGTERM (or on their own)
    killed: Tuple[int, ...]  # pids that needed SIGKILL
    leftover: Tuple[int, ...]  # pids still alive after every SIGKILL round (should be empty)
    members: Tuple[int, ...]  # every pid ever seen in the tree
    duration_s: float


class ProcessTree:
    """The processes of one server: its root, its descendants, and those that escaped.

    Thread-safe: a sampler thread may call `usage()` while another thread calls `kill()`.
    """

    def __init__(self, root_pid: int, run_id: Optional[str] = None) -> None:
        if root_pid in (0, 1, os.getpid()):
            raise ProcTreeError("refusing to manage pid %d as a server tree root" % root_pid)
        try:
            self._root = psutil.Process(root_pid)
        except psutil.NoSuchProcess as error:
            raise ProcTreeError("server process %d exited before it could be tracked" % root_pid) from error
        self._root_pid = root_pid
        # The session rule is used only if the root leads its own session (start_new_session).
        self._session: Optional[int] = root_pid if _getsid(root_pid) == root_pid else None
        self._marker = ("%s=%s" % (RUN_ID_ENV, run_id)).encode() if run_id else None
        self._members: Dict[Tuple[int, float], psutil.Process] = {}
        self._cpu_seen: Dict[Tuple[int, float], float] = {}
        self._lock = threading.RLock()
        self._add(self._root)

    @property
    def root_pid(self) -> int:
        return self._root_pid

    def members(self) -> Tuple[int, ...]:
        """Every pid ever seen in this tree, live or not."""
        with self._lock:
            return tuple(sorted({pid for pid, _ in self._members}))

    def refresh(self, thorough: bool = False) -> Tuple[int, ...]:
        """Discover new members; return the pids alive now. `thorough` also scans every process
        on the machine for the root's session and the run-id marker (slower; used before a kill).
        """
        table = _scan()
        with self._lock:
            known = list(self._members.values())
        for pid in self._discover(table, known, thorough):
            self._add_pid(pid)
        return tuple(sorted(p.pid for p in self._live()))

    def live_pids(self) -> Tuple[int, ...]:
        return tuple(sorted(p.pid for p in self._live()))

    def usage(self) -> Usage:
        """CPU seconds (user+system, over every member ever seen) and RSS (live members)."""
        self.refresh()
        rss = 0
        n_live = 0
        with self._lock:
            items = list(self._members.items())
        for key, proc in items:
            cpu, mem = _cpu_and_rss(proc)
            with self._lock:
                if cpu is not None:
                    self._cpu_seen[key] = max(cpu, self._cpu_seen.get(key, 0.0))
            if mem is not None:
                rss += mem
                n_live += 1
        with self._lock:
            total_cpu = sum(self._cpu_seen.values())
        return Usage(cpu_s=total_cpu, rss_bytes=rss, n_processes=n_live)

    def kill(self, grace_s: float, before_kill: Optional[Callable[[], None]] = None) -> KillReport:
        """End the tree: SIGTERM the root, wait up to `grace_s`, SIGKILL it if needed, then
        SIGTERM / short wait / SIGKILL every other member left. Bounded in time:
        about grace_s + 1 s + 10 x 1 s at worst (plus `before_kill`, which must be bounded).

        `before_kill` runs when the root ignored SIGTERM, just before SIGKILL: the last moment
        to see where it was stuck."""
        started = time.monotonic()
        self.refresh(thorough=True)
        self.usage()  # last CPU reading before anything dies
        root_ignored, killed = self._stop_root(grace_s, before_kill)
        self._terminate_others(min(grace_s, _ORPHAN_GRACE_MAX_S))
        killed_more, leftover = self._kill_rounds()
        reap_orphans()
        killed_all = set(killed) | set(killed_more)
        members = self.members()
        return KillReport(
            root_ignored_sigterm=root_ignored,
            terminated=tuple(sorted(set(members) - killed_all - set(leftover))),
            killed=tuple(sorted(killed_all)),
            leftover=tuple(sorted(leftover)),
            members=members,
            duration_s=time.monotonic() - started,
        )

    # ------------------------------------------------------------------ kill phases

    def _stop_root(self, grace_s: float, before_kill: Optional[Callable[[], None]] = None) -> Tuple[bool, List[int]]:
        if not _alive(self._root):
            return False, []
        _signal(self._root, signal.SIGTERM)
        if not _wait_gone([self._root], grace_s):
            return False, []
        logger.info("server pid {} ignored SIGTERM for {:.1f} s; sending SIGKILL", self._root_pid, grace_s)
        if before_kill is not None:
            try:
                before_kill()
            except Exception as error:
                logger.warning("capture before SIGKILL of {} failed: {}", self._root_pid, error)
        _signal(self._root, signal.SIGKILL)
        return True, [self._root_pid]

    def _terminate_others(self, grace_s: float) -> List[psutil.Process]:
        """SIGTERM the members still alive once the root is gone; return those that outlive
        `grace_s`."""
        self.refresh(thorough=True)
        others = [p for p in self._live() if p.pid != self._root_pid]
        for proc in others:
            _signal(proc, signal.SIGTERM)
        return _wait_gone(others, grace_s)

    def _kill_rounds(self) -> Tuple[List[int], List[int]]:
        """SIGKILL every live member, re-scanning each round for processes forked meanwhile."""
        killed: Set[int] = set()
        for _ in range(_KILL_ROUNDS):
            self.refresh(thorough=True)
            pending = self._live()
            if not pending:
                return sorted(killed), []
            for proc in pending:
                if _signal(proc, signal.SIGKILL):
                    killed.add(proc.pid)
            self._killpg_session_group(pending)
            _wait_gone(pending, _KILL_ROUND_WAIT_S)
        still = [p.pid for p in self._live()]
        if still:
            logger.error("pids {} of server {} survived SIGKILL (uninterruptible sleep?)", still, self._root_pid)
        return sorted(killed), still

    def _killpg_session_group(self, pending: List[psutil.Process]) -> None:
        """SIGKILL the root's process group too, catching a child forked since the last scan.
        Only while a known live member is still in that group, so the group id cannot have
        been recycled."""
        if self._session is None:
            return
        for proc in pending:
            try:
                if os.getpgid(proc.pid) == self._session:
                    os.killpg(self._session, signal.SIGKILL)
                    return
            except (ProcessLookupError, PermissionError):
                continue

    # ------------------------------------------------------------------ membership

    def _discover(self, table: Dict[int, _Stat], known: List[psutil.Process], thorough: bool) -> Set[int]:
        me = os.getpid()
        existing = [p for p in known if p.pid in table and _exists(p)]
        found = _descendants(table, {p.pid for p in existing if table[p.pid].state != "Z"})
        session = self._session if self._session_held(table, existing) else None
        for pid, stat in table.items():
            if pid in found or pid == me or not (thorough or stat.ppid == me):
                continue
            in_session = session is not None and stat.session == session
            if in_session or (self._marker is not None and stat.state != "Z" and _has_marker(pid, self._marker)):
                found.add(pid)
        found |= _descendants(table, found)
        found.discard(me)
        found -= _ancestors(table, me)
        return found

    def _session_held(self, table: Dict[int, _Stat], existing: List[psutil.Process]) -> bool:
        """True if a known member (live or zombie) is still in the root's session: only then
        can the session id not have been recycled by an unrelated setsid()."""
        if self._session is None:
            return False
        return any(table[p.pid].session == self._session for p in existing)

    def _add_pid(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return
        self._add(proc)

    def _add(self, proc: psutil.Process) -> None:
        try:
            key = (proc.pid, proc.create_time())
        except psutil.Error:
            return
        with self._lock:
            if key in self._members:
                return
            self._members[key] = proc
        if proc.pid != self._root_pid:
            _register_reapable(proc)

    def _live(self) -> List[psutil.Process]:
        with self._lock:
            procs = list(self._members.values())
        return [p for p in procs if _alive(p)]


def _descendants(table: Dict[int, _Stat], roots: Set[int]) -> Set[int]:
    """All pids below `roots` in the parent links of `table` (roots included). Bounded by the
    table size, so a cycle (impossible, but a racy scan) cannot loop for ever."""
    children: Dict[int, List[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found = set(roots)
    frontier = list(roots)
    for _ in range(len(table) + 1):
        if not frontier:
            break
        frontier = [c for pid in frontier for c in children.get(pid, ()) if c not in found]
        found.update(frontier)
    return found


def _ancestors(table: Dict[int, _Stat], pid: int) -> Set[int]:
    """The harness and the processes above it: never members, whatever the scan says."""
    found: Set[int] = set()
    for _ in range(len(table) + 1):
        stat = table.get(pid)
        if stat is None or stat.ppid in found or stat.ppid == 0:
            break
        found.add(stat.ppid)
        pid = stat.ppid
    return found


def _cpu_and_rss(proc: psutil.Process) -> Tuple[Optional[float], Optional[int]]:
    """(user+system CPU seconds, RSS bytes); RSS is None for a zombie or a vanished process."""
    try:
        with proc.oneshot():
            if not proc.is_running():
                return None, None
            times = proc.cpu_times()
            cpu = times.user + times.system
            if proc.status() == psutil.STATUS_ZOMBIE:
                return cpu, None
            return cpu, proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None, None


def _getsid(pid: int) -> Optional[int]:
    try:
        return os.getsid(pid)
    except OSError:
        return None
