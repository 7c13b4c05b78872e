"""Find every process a server started, however it tried to hide, and end them all.

The harness promises that every process it starts is ended and reaped, even one that detaches
itself. A process can be a member of a server's tree without being its descendant any more (a
worker whose parent died, a daemon that double-forked and called setsid() is reparented to the
harness, a child subreaper: see `reaper`). `ProcessTree` finds members six ways and never
forgets one:

* the run's cgroup, when there is one (see `cgroup`): exact, whatever the process did;
* descendants of the root and of every member seen before (an escapee seen once stays tracked);
* children of the harness in the root's session;
* children of the harness carrying the tree's run id (`HANGBENCH_RUN_ID`, which survives fork,
  setsid and exec unless the environment is scrubbed);
* reparented orphans: a child of the harness that is in another session but does not lead it
  cannot have been started by the harness (a process the harness forks either shares its
  session or leads a new one), so it was reparented: the double-forked daemon. It is claimed
  by the tree that saw its session's leader, else by the only live tree;
* before a kill, every process on the machine in the root's session or carrying the run id.

Members are held as `psutil.Process` objects, whose identity is (pid, creation time): a pid
recycled by an unrelated process is never signalled.

Killing follows gunicorn's arbiter: SIGTERM to the root (it stops its own workers), wait the
grace period, SIGKILL the root if it ignored SIGTERM, then SIGTERM -> short wait -> SIGKILL for
whatever members remain (and `cgroup.kill`), in bounded rounds that also catch processes forked
meanwhile. Whatever is still alive after that is reported as a leak.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

import psutil
from loguru import logger

from .cgroup import RunCgroup
from .markers import RUN_ID_ENV
from .procscan import MEM_KINDS, Stat, ancestors, cpu_and_mem, descendants, getsid, has_marker, scan
from .reaper import (
    ProcTreeError,
    alive,
    enable_subreaper,
    exists,
    is_subreaper,
    reap_orphans,
    register_reapable,
    send_signal,
    wait_gone,
)

__all__ = [
    "RUN_ID_ENV",
    "KillReport",
    "ProcTreeError",
    "ProcessTree",
    "Usage",
    "enable_subreaper",
    "is_subreaper",
    "reap_orphans",
]

_KILL_ROUNDS = 10  # SIGKILL rounds; each catches processes forked since the last one
_KILL_ROUND_WAIT_S = 1.0
_ORPHAN_GRACE_MAX_S = 1.0  # SIGTERM grace for members left after the root is gone

# Trees not yet killed, to attribute a reparented orphan when only one could own it.
_live_trees: weakref.WeakSet[ProcessTree] = weakref.WeakSet()


@dataclass(frozen=True)
class Usage:
    """Resources of a tree at one instant. `cpu_s` includes members that have exited (their
    last-seen CPU time); `rss_bytes` and `mem_bytes` count live members only."""

    cpu_s: float
    rss_bytes: int
    n_processes: int
    mem_bytes: int = 0  # summed over live members, as `mem_kind`
    mem_kind: str = "rss"  # "pss", "uss" or "rss": the weakest kind any member was measured in


@dataclass(frozen=True)
class KillReport:
    """What ending a tree took."""

    root_ignored_sigterm: bool  # the root was still alive when its grace period ran out
    terminated: Tuple[int, ...]  # pids that exited after SIGTERM (or on their own)
    killed: Tuple[int, ...]  # pids that needed SIGKILL
    leftover: Tuple[int, ...]  # pids still alive after every SIGKILL round (should be empty)
    members: Tuple[int, ...]  # every pid ever seen in the tree
    duration_s: float
    containment: str = "subreaper+poll"  # or "cgroup": how members were found


class ProcessTree:
    """The processes of one server: its root, its descendants, and those that escaped.

    Thread-safe: a sampler thread may call `usage()` while another thread calls `kill()`.
    """

    def __init__(self, root_pid: int, run_id: Optional[str] = None, cgroup: Optional[RunCgroup] = None) -> None:
        if root_pid in (0, 1, os.getpid()):
            raise ProcTreeError("refusing to manage pid %d as a server tree root" % root_pid)
        try:
            self._root = psutil.Process(root_pid)
        except psutil.NoSuchProcess as error:
            raise ProcTreeError("server process %d exited before it could be tracked" % root_pid) from error
        self._root_pid = root_pid
        # The session rule is used only if the root leads its own session (start_new_session).
        self._session: Optional[int] = root_pid if getsid(root_pid) == root_pid else None
        self._marker = ("%s=%s" % (RUN_ID_ENV, run_id)).encode() if run_id else None
        self._cgroup = cgroup
        self._members: Dict[Tuple[int, float], psutil.Process] = {}
        self._cpu_seen: Dict[Tuple[int, float], float] = {}
        self._mem_kind = MEM_KINDS[0]
        self._lock = threading.RLock()
        self._add(self._root)
        _live_trees.add(self)

    @property
    def root_pid(self) -> int:
        return self._root_pid

    @property
    def containment(self) -> str:
        return "cgroup" if self._cgroup is not None else "subreaper+poll"

    def members(self) -> Tuple[int, ...]:
        """Every pid ever seen in this tree, live or not."""
        with self._lock:
            return tuple(sorted({pid for pid, _ in self._members}))

    def refresh(self, thorough: bool = False) -> Tuple[int, ...]:
        """Discover new members; return the pids alive now. `thorough` also scans every process
        on the machine for the root's session and the run-id marker (slower; used before a kill).
        """
        table = scan()
        with self._lock:
            known = list(self._members.values())
        for pid in self._discover(table, known, thorough):
            self._add_pid(pid)
        return tuple(sorted(p.pid for p in self._live()))

    def live_pids(self) -> Tuple[int, ...]:
        return tuple(sorted(p.pid for p in self._live()))

    def usage(self) -> Usage:
        """CPU seconds (user+system, over every member ever seen) and memory (live members)."""
        self.refresh()
        rss = mem = n_live = 0
        kinds = {self._mem_kind}
        with self._lock:
            items = list(self._members.items())
        for key, proc in items:
            used = cpu_and_mem(proc, self._mem_kind)
            with self._lock:
                if used.cpu_s is not None:
                    self._cpu_seen[key] = max(used.cpu_s, self._cpu_seen.get(key, 0.0))
            if used.mem_bytes is not None:
                mem += used.mem_bytes
                rss += used.rss_bytes or 0
                n_live += 1
                kinds.add(used.mem_kind)
        weakest = max(kinds, key=MEM_KINDS.index)
        with self._lock:
            self._mem_kind = weakest  # once a member could only be measured as RSS, stay comparable
            total_cpu = sum(self._cpu_seen.values())
        return Usage(cpu_s=total_cpu, rss_bytes=rss, n_processes=n_live, mem_bytes=mem, mem_kind=weakest)

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
        _live_trees.discard(self)
        killed_all = set(killed) | set(killed_more)
        members = self.members()
        return KillReport(
            root_ignored_sigterm=root_ignored,
            terminated=tuple(sorted(set(members) - killed_all - set(leftover))),
            killed=tuple(sorted(killed_all)),
            leftover=tuple(sorted(leftover)),
            members=members,
            duration_s=time.monotonic() - started,
            containment=self.containment,
        )

    # ------------------------------------------------------------------ kill phases

    def _stop_root(self, grace_s: float, before_kill: Optional[Callable[[], None]] = None) -> Tuple[bool, List[int]]:
        if not alive(self._root):
            return False, []
        send_signal(self._root, signal.SIGTERM)
        if not wait_gone([self._root], grace_s):
            return False, []
        logger.info("server pid {} ignored SIGTERM for {:.1f} s; sending SIGKILL", self._root_pid, grace_s)
        if before_kill is not None:
            try:
                before_kill()
            except Exception as error:
                logger.warning("capture before SIGKILL of {} failed: {}", self._root_pid, error)
        send_signal(self._root, signal.SIGKILL)
        return True, [self._root_pid]

    def _terminate_others(self, grace_s: float) -> List[psutil.Process]:
        """SIGTERM the members still alive once the root is gone; return those that outlive
        `grace_s`."""
        self.refresh(thorough=True)
        others = [p for p in self._live() if p.pid != self._root_pid]
        for proc in others:
            send_signal(proc, signal.SIGTERM)
        return wait_gone(others, grace_s)

    def _kill_rounds(self) -> Tuple[List[int], List[int]]:
        """SIGKILL every live member, re-scanning each round for processes forked meanwhile."""
        killed: Set[int] = set()
        for _ in range(_KILL_ROUNDS):
            self.refresh(thorough=True)
            pending = self._live()
            if not pending:
                return sorted(killed), []
            for proc in pending:
                if send_signal(proc, signal.SIGKILL):
                    killed.add(proc.pid)
            self._killpg_session_group(pending)
            if self._cgroup is not None:
                self._cgroup.kill()  # also whatever was forked since the scan
            wait_gone(pending, _KILL_ROUND_WAIT_S)
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

    def _discover(self, table: Dict[int, Stat], known: List[psutil.Process], thorough: bool) -> Set[int]:
        me = os.getpid()
        my_session = table[me].session if me in table else None
        existing = [p for p in known if p.pid in table and exists(p)]
        found = descendants(table, {p.pid for p in existing if table[p.pid].state != "Z"})
        if self._cgroup is not None:
            found.update(pid for pid in self._cgroup.pids() if pid in table)
        session = self._session if self._session_held(table, existing) else None
        seen = self.members()
        for pid, stat in table.items():
            if pid in found or pid == me or not (thorough or stat.ppid == me):
                continue
            in_session = session is not None and stat.session == session
            if (
                in_session
                or (self._marker is not None and stat.state != "Z" and has_marker(pid, self._marker))
                or (stat.ppid == me and stat.state != "Z" and self._claims_orphan(pid, stat, my_session, seen))
            ):
                found.add(pid)
        found |= descendants(table, found)
        found.discard(me)
        found -= ancestors(table, me)
        return found

    def _claims_orphan(self, pid: int, stat: Stat, my_session: Optional[int], seen: Tuple[int, ...]) -> bool:
        """A reparented orphan (see the module docstring) that belongs to this tree."""
        if stat.session in (my_session, pid):
            return False  # shares the harness's session, or leads its own: maybe ours
        if stat.session in seen:
            return True  # its session was created by a member of this tree
        return not [t for t in list(_live_trees) if t is not self]  # the only tree that can own it

    def _session_held(self, table: Dict[int, Stat], existing: List[psutil.Process]) -> bool:
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
            register_reapable(proc)

    def _live(self) -> List[psutil.Process]:
        with self._lock:
            procs = list(self._members.values())
        return [p for p in procs if alive(p)]
