"""`python -m harness cleanup`: find, and with --kill end, what dead runs left running.

A run's processes normally die with it (the stop, and the server's watchdog when the harness is
killed). This is the last resort: after a crash of the machine's session, a watchdog that could
not act, or a server started by hand with a marker. A process is a leftover of a dead run when

* its environment carries `HANGBENCH_RUN_ID` and its `HANGBENCH_HARNESS` names a harness that no
  longer runs (see `markers`); or
* it sits in a `hangbench-PID-START-RUN` cgroup whose harness no longer runs -- this finds even
  a daemon that scrubbed its environment.

Processes of a run whose harness is alive are never touched: that run is in progress.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import cgroup
from .markers import HARNESS_ENV, RUN_ID_ENV, environ_of, harness_alive

_KILL_WAIT_S = 3.0
_POLL_S = 0.05


@dataclass(frozen=True)
class Leftover:
    pid: int
    run_id: str
    how: str  # "marker" or "cgroup"
    cmdline: str


def find_leftovers(only_run: Optional[str] = None) -> List[Leftover]:
    """Processes of runs whose harness is dead, by marker and by cgroup (never ourselves);
    of the run `only_run` alone if given."""
    found: Dict[int, Leftover] = {}
    me = os.getpid()
    for group in dead_run_groups():
        for pid in cgroup.RunCgroup(group).pids():
            if pid != me:
                found[pid] = Leftover(pid, os.path.basename(group).rsplit("-", 1)[-1], "cgroup", _cmdline(pid))
    for pid in _pids():
        if pid == me or pid in found:
            continue
        env = environ_of(pid)
        run_id, owner = env.get(RUN_ID_ENV), env.get(HARNESS_ENV)
        if run_id and owner and not harness_alive(owner):
            found[pid] = Leftover(pid, run_id, "marker", _cmdline(pid))
    return [found[pid] for pid in sorted(found) if only_run is None or found[pid].run_id == only_run]


def dead_run_groups() -> List[str]:
    """Paths of the harness's run cgroups (beside ours) whose harness no longer runs."""
    return cgroup.dead_groups()


def cleanup_main(kill: bool, *, only_run: Optional[str] = None) -> int:
    """List the leftovers of dead runs on stdout; with `kill`, SIGKILL them and remove their
    cgroups. Listing is the default so that a look costs nothing; `--kill` acts.

    Returns 0 if nothing is left afterwards (or nothing was found), 1 if leftovers remain
    (listed but not killed, or surviving SIGKILL). `only_run` limits it to one run id."""
    leftovers = find_leftovers(only_run)
    groups = [g for g in dead_run_groups() if only_run is None or g.endswith("-" + only_run)]
    if not leftovers:
        print("hangbench cleanup: no process of a dead run is left")
        if kill:
            _remove_groups(groups)
        return 0
    for item in leftovers:
        print("%7d  run %s  (by %s)  %s" % (item.pid, item.run_id, item.how, item.cmdline[:100]))
    if not kill:
        print("hangbench cleanup: %d process(es) of dead runs; run again with --kill to end them" % len(leftovers))
        return 1
    for group in groups:
        cgroup.RunCgroup(group).kill()
    for item in leftovers:
        _kill(item.pid)
    survivors = _wait_gone([item.pid for item in leftovers], _KILL_WAIT_S)
    _remove_groups(groups)
    if survivors:
        sys.stderr.write("hangbench cleanup: %d process(es) survived SIGKILL: %s\n" % (len(survivors), survivors))
        return 1
    print("hangbench cleanup: killed %d process(es)" % len(leftovers))
    return 0


def _remove_groups(groups: List[str]) -> None:
    for group in groups:
        cgroup.RunCgroup(group).remove()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _wait_gone(pids: List[int], timeout_s: float) -> List[int]:
    deadline = time.monotonic() + timeout_s
    pending = pids
    for _ in range(int(timeout_s / _POLL_S) + 1):
        pending = [pid for pid in pending if _state(pid) not in (None, "Z")]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    return pending


def _state(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _pids() -> List[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []
