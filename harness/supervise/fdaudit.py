"""The fd audit: does the harness still hold anything of a server after stopping it?

`snapshot()` before the start and `leaked()` after the stop compare the harness's own open
file descriptors (from /proc/self/fd): a new one that still points at the server -- its output
pipes, its log files, a TCP connection to its port -- is a leak of the harness, reported in the
stop report. Without /proc only the raw count is available.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Set, Tuple

import psutil

from .procfs import tcp_entries


def fd_targets() -> Dict[int, str]:
    """fd -> what it points to ("pipe:[12]", "socket:[34]", a path), for this process; {}
    without /proc."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    targets = {}
    for name in names:
        try:
            targets[int(name)] = os.readlink("/proc/self/fd/" + name)
        except (OSError, ValueError):
            continue  # the fd listdir itself used, already closed
    return targets


def open_fd_count() -> int:
    return int(psutil.Process().num_fds())


def leaked(
    before: Dict[int, str], pipe_targets: Iterable[str], port: Optional[int], folders: Iterable[str]
) -> Tuple[str, ...]:
    """What the fds opened since `before` and still open point at, among those of the server:
    its pipes, a TCP socket to or from `port`, a file under one of `folders`."""
    new = [target for fd, target in fd_targets().items() if before.get(fd) != target]
    pipes = set(pipe_targets)
    roots = [os.path.abspath(folder) + os.sep for folder in folders]
    sockets: Set[str] = set()
    if port is not None and any(target.startswith("socket:[") for target in new):
        sockets = {"socket:[%s]" % e.inode for e in tcp_entries(os.getpid()) if port in (e.local_port, e.remote_port)}
    ours = [t for t in new if t in pipes or t in sockets or any(t.startswith(root) for root in roots)]
    return tuple(sorted(ours))
