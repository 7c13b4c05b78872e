"""One pass over /proc: who is whose parent, in which session, and what a process uses.

The tree logic (`proctree`) needs the parent, process group, session and state of every
process at one instant, and it needs them often (every sample), so they are read in one pass
over /proc/*/stat rather than through one psutil object per process; psutil is the fallback
off Linux. Memory is measured as PSS where the kernel offers it (each shared page divided
among the processes sharing it), so that N forked copies of one server are not counted N
times; USS, then RSS, are the fallbacks. `MemoryKind` names what was measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Set

import psutil


@dataclass(frozen=True)
class Stat:
    ppid: int
    pgrp: int
    session: int
    state: str


def scan() -> Dict[int, Stat]:
    """pid -> (ppid, pgrp, session, state) of every process, in one pass over /proc."""
    if not os.path.isdir("/proc/self/task"):
        return _scan_psutil()
    table: Dict[int, Stat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def _read_stat(pid: int) -> Optional[Stat]:
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Stat(ppid=int(fields[1]), pgrp=int(fields[2]), session=int(fields[3]), state=fields[0].decode())
    except (IndexError, ValueError):
        return None


def _scan_psutil() -> Dict[int, Stat]:
    table: Dict[int, Stat] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        try:
            pgrp = os.getpgid(proc.pid)
            session = os.getsid(proc.pid)
        except OSError:
            continue
        zombie = proc.info["status"] == psutil.STATUS_ZOMBIE
        table[proc.pid] = Stat(proc.info["ppid"] or 0, pgrp, session, "Z" if zombie else "S")
    return table


def has_marker(pid: int, marker: bytes) -> bool:
    """True if /proc/PID/environ contains exactly `marker` (b"NAME=value")."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def descendants(table: Dict[int, Stat], roots: Set[int]) -> Set[int]:
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


def ancestors(table: Dict[int, Stat], pid: int) -> Set[int]:
    """The harness and the processes above it: never members, whatever the scan says."""
    found: Set[int] = set()
    for _ in range(len(table) + 1):
        stat = table.get(pid)
        if stat is None or stat.ppid in found or stat.ppid == 0:
            break
        found.add(stat.ppid)
        pid = stat.ppid
    return found


MEM_KINDS = ("pss", "uss", "rss")  # best first


@dataclass(frozen=True)
class ProcUsage:
    cpu_s: Optional[float]  # user+system CPU seconds; None if the process is gone
    mem_bytes: Optional[int]  # None for a zombie or a vanished process
    mem_kind: str  # "pss", "uss" or "rss": what mem_bytes measures
    rss_bytes: Optional[int]


def cpu_and_mem(proc: psutil.Process, kind: str = "pss") -> ProcUsage:
    """CPU so far and memory now of one process, memory as `kind` if readable (PSS needs
    /proc/PID/smaps_rollup or smaps, and permission to read it), else the next best kind."""
    try:
        with proc.oneshot():
            if not proc.is_running():
                return ProcUsage(None, None, kind, None)
            times = proc.cpu_times()
            cpu = times.user + times.system
            if proc.status() == psutil.STATUS_ZOMBIE:
                return ProcUsage(cpu, None, kind, None)
            rss = int(proc.memory_info().rss)
            if kind == "rss":
                return ProcUsage(cpu, rss, "rss", rss)
            try:
                full = proc.memory_full_info()
            except (psutil.AccessDenied, NotImplementedError, OSError):
                return ProcUsage(cpu, rss, "rss", rss)
            for name in MEM_KINDS[MEM_KINDS.index(kind) :]:
                value = getattr(full, name, None)
                if value is not None:
                    return ProcUsage(cpu, int(value), name, rss)
            return ProcUsage(cpu, rss, "rss", rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ProcUsage(None, None, kind, None)


def getsid(pid: int) -> Optional[int]:
    try:
        return os.getsid(pid)
    except OSError:
        return None
