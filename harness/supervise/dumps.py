"""The records of a forensics capture: frames, threads, kernel tasks, fds, one per process.

Frozen dataclasses that `Forensics.to_dict()` turns into plain JSON. Kept apart from the code
that fills them (stacks, procfs) and reads them (diagnosis), which all import from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class Frame:
    function: str
    filename: str
    line: int
    native: bool = False  # a C frame (py-spy --native), not Python code


@dataclass(frozen=True)
class ThreadDump:
    """One thread's stack, innermost frame first."""

    tid: Optional[int]  # OS thread id when known (py-spy); faulthandler gives none
    name: Optional[str]
    frames: Tuple[Frame, ...]
    active: Optional[bool] = None  # py-spy's guess that the thread is on CPU


@dataclass(frozen=True)
class TaskInfo:
    """The kernel's view of one thread (task) of a process."""

    tid: int
    comm: str
    state: str  # R running, S sleeping, D uninterruptible, T stopped, Z zombie, ...
    wchan: Optional[str]
    syscall: Optional[str]  # the system call it is blocked in, "running", or None if unknown


@dataclass(frozen=True)
class FdInfo:
    fd: int
    target: str  # readlink of /proc/PID/fd/N: "socket:[123]", "pipe:[45]", "/dev/null", ...
    detail: Optional[str] = None  # for sockets: "tcp 127.0.0.1:80 <- 127.0.0.1:5000 ESTABLISHED"


@dataclass(frozen=True)
class ProcessDump:
    pid: int
    cmdline: str
    state: Optional[str]
    wchan: Optional[str]
    stack_source: str  # "py-spy --native", "py-spy", "faulthandler" or "none"
    threads: Tuple[ThreadDump, ...]
    tasks: Tuple[TaskInfo, ...]
    fds: Tuple[FdInfo, ...]
    errors: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Forensics:
    captured_at: float  # Unix time
    duration_s: float
    processes: Tuple[ProcessDump, ...]
    summary: str
    path: Optional[str] = None  # where the JSON was written
    stack_method: str = ""  # "py-spy", "faulthandler (py-spy not found)", ... how stacks were taken
    fallback_pids: Tuple[int, ...] = ()  # processes whose stacks came from the SIGUSR2/faulthandler fallback
    write_error: Optional[str] = None  # the JSON could not be written (the capture is still returned)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
