"""A cgroup v2 sub-group per server run: the one membership a process cannot leave by itself.

fork, setsid(), a double fork and exec with an empty environment all keep a process in its
cgroup, so where the harness may create a sub-group (cgroup v2 mounted and writable, as root or
with a delegated subtree) every process a server ever started is listed in its `cgroup.procs`,
and `cgroup.kill` (Linux 5.14+) ends them all in one write. Where it may not, `RunCgroup.create`
returns None with the reason and the supervisor falls back to the subreaper and polling (see
`proctree`); the stop report says which was used.

The group is created beside nothing else: `<v2 mount><our own cgroup>/hangbench-PID-START-RUN`,
named after the harness (see `markers`) so that `harness cleanup` can tell a dead run's group
from a live one. The server is moved in right after it is started: before it runs any code of
the strategy (an interpreter takes tens of milliseconds to start), so nothing it forks is
missed; the polling fallback covers the rest.
"""

from __future__ import annotations

import os
import signal
import time
from typing import List, Optional, Tuple

from .markers import CGROUP_PREFIX, harness_alive, harness_identity

_MAX_GROUPS = 1000
_MAX_DEPTH = 8  # sub-groups a server might create inside its own group
_RMDIR_WAIT_S = 2.0
_POLL_S = 0.02


def v2_mount() -> Optional[str]:
    """Mount point of the cgroup v2 hierarchy, or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return left.split()[4]
    return None


def own_group(pid: str = "self") -> Optional[str]:
    """The cgroup v2 path of a process, relative to the mount ("/" for the root), or None."""
    try:
        with open("/proc/%s/cgroup" % pid) as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def parent_dir() -> Optional[str]:
    """Where this harness creates its run groups: its own cgroup's directory."""
    mount, group = v2_mount(), own_group()
    if mount is None or group is None:
        return None
    return os.path.join(mount, group.lstrip("/"))


class RunCgroup:
    """One server run's cgroup. Create with `RunCgroup.create(run_id)`."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def create(cls, run_id: str) -> Tuple[Optional[RunCgroup], str]:
        """(group, "") or (None, why not): a sentence for the stop report."""
        parent = parent_dir()
        if parent is None:
            return None, "no cgroup v2 hierarchy is mounted"
        prune_empty_dead_groups(parent)
        path = os.path.join(parent, "%s%s-%s" % (CGROUP_PREFIX, harness_identity().replace(":", "-"), run_id))
        try:
            os.mkdir(path)
        except OSError as error:
            return None, "cannot create a cgroup under %s: %s" % (parent, error.strerror or error)
        return cls(path), ""

    def add(self, pid: int) -> Optional[str]:
        """Move `pid` into the group; None, or why it failed (the group is then removed)."""
        try:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as error:
            self.remove()
            return "cannot move the server into %s: %s" % (self.path, error.strerror or error)
        return None

    def pids(self) -> Tuple[int, ...]:
        """Every process in the group and its sub-groups (bounded depth)."""
        found: List[int] = []
        for directory in self._groups():
            found.extend(_read_pids(os.path.join(directory, "cgroup.procs")))
        return tuple(sorted(set(found)))

    def kill(self) -> None:
        """SIGKILL every process in the group: cgroup.kill, else one by one."""
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
            return
        except OSError:
            pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def remove(self) -> bool:
        """Remove the (empty) group and its sub-groups; True if gone. Bounded wait: the kernel
        releases a group a moment after its last process is reaped."""
        deadline = time.monotonic() + _RMDIR_WAIT_S
        for _ in range(int(_RMDIR_WAIT_S / _POLL_S) + 1):
            for directory in reversed(self._groups()):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            if not os.path.isdir(self.path) or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return not os.path.isdir(self.path)

    def _groups(self) -> List[str]:
        """This group and its sub-groups, parents first."""
        groups = [self.path]
        frontier = [self.path]
        for _ in range(_MAX_DEPTH):
            nested: List[str] = []
            for directory in frontier:
                try:
                    entries = os.scandir(directory)
                except OSError:
                    continue
                with entries:
                    nested.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
            groups.extend(nested)
            frontier = nested
            if not frontier:
                break
        return groups


def dead_groups(parent: Optional[str] = None) -> List[str]:
    """Paths of the run groups (under `parent`, default ours) whose harness no longer runs."""
    parent = parent_dir() if parent is None else parent
    if parent is None:
        return []
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(CGROUP_PREFIX))
    except OSError:
        return []
    dead = []
    for name in names[:_MAX_GROUPS]:
        parts = name[len(CGROUP_PREFIX) :].split("-")
        if len(parts) >= 3 and not harness_alive("%s:%s" % (parts[0], parts[1])):
            dead.append(os.path.join(parent, name))
    return dead


def prune_empty_dead_groups(parent: str) -> None:
    """Remove the empty run groups of dead harnesses (a harness killed by SIGKILL leaves its
    group behind; its server's watchdog emptied it). rmdir refuses a group that still holds a
    process, so nothing alive is touched; `harness cleanup` handles those."""
    for path in dead_groups(parent):
        try:
            os.rmdir(path)
        except OSError:
            continue


def _read_pids(path: str) -> List[int]:
    try:
        with open(path) as f:
            return [int(n) for n in f.read().split() if n.isdigit()]
    except OSError:
        return []
