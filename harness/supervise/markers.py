"""The marks a server run leaves on its processes, and how to tell whether their harness lives.

Every server gets two environment variables, which fork, setsid() and exec pass on unless a
process scrubs its environment: `HANGBENCH_RUN_ID` (one id per server run) and
`HANGBENCH_HARNESS` ("PID:START", the harness process that started it, identified by pid and
start time so that a recycled pid is not mistaken for it). Per-run cgroups are named
`hangbench-PID-START-RUNID` for the same reason. `harness cleanup` uses both to find the
leftovers of runs whose harness is dead.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from ..server.watchdog import CGROUP_PREFIX, RUN_ID_ENV, WATCHDOG_FD_ENV

HARNESS_ENV = "HANGBENCH_HARNESS"

__all__ = ["CGROUP_PREFIX", "HARNESS_ENV", "RUN_ID_ENV", "WATCHDOG_FD_ENV", "harness_alive", "harness_identity"]


def start_ticks(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def harness_identity(pid: Optional[int] = None) -> str:
    """ "PID:START" of this process (or `pid`): stable for its life, never reused."""
    pid = os.getpid() if pid is None else pid
    return "%d:%s" % (pid, start_ticks(pid) or 0)


def harness_alive(identity: str) -> bool:
    """True if the harness named by `identity` ("PID:START") is still running."""
    pid_text, _, start = identity.partition(":")
    if not pid_text.isdigit():
        return False
    now = start_ticks(int(pid_text))
    return now is not None and str(now) == start


def environ_of(pid: int) -> Dict[str, str]:
    """The initial environment of `pid` ({} if unreadable)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}
