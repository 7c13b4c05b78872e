"""Diagnosis: turn a capture into one phrase saying where a server is stuck.

`summarize()` gives e.g. "12/16 threads in recv (connection.py:88) across 12 processes; 4 idle":
the most common (blocking call, innermost frame of code that is not the standard library) among
threads that are not merely idle pool/executor workers waiting for a task. With no thread
working, a process still holding accepted connections is named instead; with no stacks at all,
the kernel's process states are.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .dumps import Forensics, Frame, ProcessDump, TaskInfo, ThreadDump

# Frames of loops that wait for work. A thread whose stack holds one of these, with nothing but
# library code inside it, is idle rather than stuck: a pool worker waiting for its next task, an
# executor thread, a listener waiting in accept(), an event loop waiting in select().
_IDLE_FRAMES = (
    ("multiprocessing/pool.py", ("worker", "_handle_workers", "_handle_tasks", "_handle_results")),
    ("concurrent/futures/thread.py", ("_worker",)),
    ("concurrent/futures/process.py", ("_process_worker", "run")),
    ("multiprocessing/resource_sharer.py", ("_serve",)),
    ("multiprocessing/forkserver.py", ("main",)),
    ("multiprocessing/resource_tracker.py", ("main",)),
    ("socketserver.py", ("serve_forever",)),
    ("asyncio/base_events.py", ("run_forever",)),
    ("gevent/hub.py", ("run",)),
    ("multiprocessing/queues.py", ("_feed",)),
    ("socket.py", ("accept",)),
    ("selectors.py", ("select",)),
    ("harness/server/watchdog.py", ("_watch",)),  # waits for the harness to go away
    ("harness/server/reactor.py", ("_pool_worker",)),  # a reactor pool thread waiting for a connection
    ("harness/server/poller.py", ("poll",)),  # the reactor's selector thread waiting for events
)


@dataclass(frozen=True)
class _Point:
    call: str
    where: str
    idle: bool


def summarize(forensics: Forensics) -> str:
    """One short phrase saying where the captured processes are stuck."""
    return summarize_processes(forensics.processes)


def summarize_processes(processes: Sequence[ProcessDump]) -> str:
    points = [(dump.pid, _point(dump, thread)) for dump in processes for thread in dump.threads]
    if not points:
        return _summarize_states(processes)
    total = len(points)
    busy = [(pid, p) for pid, p in points if not p.idle]
    chosen = busy or points
    (call, where), count = Counter((p.call, p.where) for _, p in chosen).most_common(1)[0]
    pids = {pid for pid, p in chosen if (p.call, p.where) == (call, where)}
    spread = " across %d processes" % len(pids) if len(pids) > 1 else ""
    location = " (%s)" % where if where else ""
    doing = "running" if call == "running" else "in " + call
    if not busy:
        held = _held_while_idle(processes)
        if held:
            return held
        return "idle: %d/%d threads waiting for work, most %s%s%s" % (total, total, doing, location, spread)
    elsewhere = len(busy) - count
    idle = total - len(busy)
    tail = (", %d elsewhere" % elsewhere if elsewhere else "") + ("; %d idle" % idle if idle else "")
    return "%d/%d threads %s%s%s%s" % (count, total, doing, location, spread, tail)


def thread_activity(processes: Sequence[ProcessDump]) -> List[Tuple[int, str, str, bool]]:
    """(pid, call, where, idle) of every captured thread: the facts `summarize` reduces to a
    phrase, for rules that need them one by one (harness.supervise.causes)."""
    return [(dump.pid, p.call, p.where, p.idle) for dump in processes for p in (_point(dump, t) for t in dump.threads)]


def _held_while_idle(processes: Sequence[ProcessDump]) -> Optional[str]:
    """With no thread working, a process that still holds accepted client connections is where
    the hang is: nobody serves them, yet they stay open (the lingering-reference case, a task
    lost with its socket). Name the process with the most, and where its main thread waits."""
    listen_ports = {
        _detail_port(detail) for dump in processes for detail in _tcp_details(dump) if detail.endswith(" LISTEN")
    } - {""}
    best: Optional[Tuple[int, ProcessDump, Counter]] = None
    for dump in processes:
        states = Counter(
            detail.rsplit(" ", 1)[-1]
            for detail in _tcp_details(dump)
            if not detail.endswith(" LISTEN") and _detail_port(detail) in listen_ports
        )
        count = sum(states.values())
        if count and (best is None or count > best[0]):
            best = (count, dump, states)
    if best is None:
        return None
    count, dump, states = best
    # Where its main thread waits (py-spy names it; faulthandler lists it last).
    main = [t for t in dump.threads if t.tid == dump.pid or t.name == "MainThread"] or list(dump.threads[-1:])
    point = _point(dump, main[0]) if main else None
    waiting = (
        " while its main thread is idle in %s%s" % (point.call, " (%s)" % point.where if point.where else "")
        if point
        else ""
    )
    kinds = ", ".join("%d %s" % (n, state) for state, n in states.most_common())
    return "no thread working, but pid %d holds %d accepted client connection%s (%s)%s" % (
        dump.pid,
        count,
        "" if count == 1 else "s",
        kinds,
        waiting,
    )


def _tcp_details(dump: ProcessDump) -> List[str]:
    return [fd.detail for fd in dump.fds if fd.detail and fd.detail.startswith("tcp")]


def _detail_port(detail: str) -> str:
    """The local port of a socket-table detail "tcp 127.0.0.1:8080 <- 127.0.0.1:5555 STATE"."""
    parts = detail.split()
    return parts[1].rsplit(":", 1)[-1] if len(parts) > 1 else ""


def _summarize_states(processes: Sequence[ProcessDump]) -> str:
    if not processes:
        return "no processes captured"
    states = Counter(
        "%s%s" % (_STATE_WORDS.get(d.state or "?", d.state or "gone"), " in %s" % d.wchan if d.wchan else "")
        for d in processes
    )
    parts = ", ".join("%d %s" % (n, what) for what, n in states.most_common(3))
    return "no Python stacks; %d process%s: %s" % (len(processes), "es" if len(processes) > 1 else "", parts)


_STATE_WORDS = {
    "R": "running",
    "S": "sleeping",
    "D": "in uninterruptible sleep",
    "T": "stopped",
    "t": "traced",
    "Z": "zombie",
    "I": "idle",
}


def _point(dump: ProcessDump, thread: ThreadDump) -> _Point:
    python = [f for f in thread.frames if not f.native]
    task = _task_for(dump, thread)
    idle = _is_idle(python)
    return _Point(call=_call(thread, task, python), where=_where(python, innermost=idle), idle=idle)


def _task_for(dump: ProcessDump, thread: ThreadDump) -> Optional[TaskInfo]:
    """The kernel task of `thread`: by thread id (py-spy), else the only one, else -- for a
    faulthandler dump, which gives no thread ids -- any task if all of them are in the same
    state and system call (e.g. every thread blocked in recvfrom)."""
    for task in dump.tasks:
        if task.tid == thread.tid:
            return task
    if thread.tid is None and dump.tasks and len({(t.state, t.syscall) for t in dump.tasks}) == 1:
        return dump.tasks[0]
    return None


def _call(thread: ThreadDump, task: Optional[TaskInfo], python: List[Frame]) -> str:
    """What the thread is doing: "running"; else the blocking call as Python code names it
    (the C builtin just below the innermost Python frame: `sock_recv` -> "recv"), else the libc
    function or system call it is blocked in, else its innermost Python function."""
    if (task is not None and task.state == "R") or (task is None and thread.active):
        return "running"
    named = _builtin_call(thread.frames) or _innermost_libc_call(thread.frames)
    if named:
        return named
    if task is not None and task.syscall and task.syscall != "running":
        return task.syscall
    return _bare(python[0].function) if python else "?"


# C functions that implement a blocking Python builtin -> the name Python code uses.
_BUILTINS = (
    (re.compile(r"^sock_(\w+?)(?:_impl)?$"), r"\1"),
    (re.compile(r"^time_sleep$|^pysleep$"), "sleep"),
    (re.compile(r"^(?:lock_PyThread_acquire_lock|rlock_acquire|_thread_lock_acquire\w*)$"), "lock.acquire"),
    (re.compile(r"^_multiprocessing_SemLock_acquire\w*$"), "SemLock.acquire"),
    (re.compile(r"^_queue_SimpleQueue_get\w*$"), "queue.get"),
    (re.compile(r"^select_select(?:_impl)?$"), "select"),
    (re.compile(r"^select_(poll|epoll|devpoll|kqueue)_(\w+?)(?:_impl)?$"), r"\1.\2"),
    (re.compile(r"^os_(\w+?)(?:_impl)?$"), r"os.\1"),
    (re.compile(r"^_io__?(?:FileIO|Buffered\w*)_(read\w*|write\w*)(?:_impl)?$"), r"\1"),
)


def _builtin_call(frames: Sequence[Frame]) -> Optional[str]:
    """The Python name of the C builtin called by the innermost Python frame, if known."""
    for index, frame in enumerate(frames):
        if not frame.native:
            if index == 0:
                return None
            name = frames[index - 1].function
            for pattern, replacement in _BUILTINS:
                if pattern.match(name):
                    return pattern.sub(replacement, name)
            return None
    return None


def _innermost_libc_call(frames: Sequence[Frame]) -> Optional[str]:
    for frame in frames:
        if not frame.native:
            return None  # reached Python code: no C call at the top of this stack
        name = frame.function
        if os.path.basename(frame.filename).startswith(("libc", "libpthread")) and re.match(r"^[a-z]\w*$", name):
            return name
    return None


def _where(python: List[Frame], innermost: bool = False) -> str:
    """file:line of the innermost frame outside the standard library and installed packages
    (the code that made the blocking call), or of the innermost frame if `innermost` or if
    every frame is library code."""
    if not python:
        return ""
    chosen = python[0]
    if not innermost:
        chosen = next((f for f in python if not _is_library(f.filename)), python[0])
    return "%s:%d" % (os.path.basename(chosen.filename), chosen.line)


def _is_idle(python: List[Frame]) -> bool:
    for index, frame in enumerate(python):
        if _is_idle_frame(frame):
            return all(_is_library(inner.filename) for inner in python[:index])
    return False


def _is_idle_frame(frame: Frame) -> bool:
    path = frame.filename.replace("\\", "/")
    function = _bare(frame.function)
    return any((path.endswith("/" + suffix) or path == suffix) and function in names for suffix, names in _IDLE_FRAMES)


def _is_library(filename: str) -> bool:
    """Standard library or installed third-party code (not the harness, a strategy or a plugin)."""
    path = filename.replace("\\", "/")
    return (
        path.startswith("<frozen")
        or "/site-packages/" in path
        or "/dist-packages/" in path
        or bool(re.search(r"/lib/python3\.\d+/", path))
        or bool(re.search(r"/lib/pypy3[\d.]*/", path))
    )


def _bare(function: str) -> str:
    """py-spy gives qualified names ("Thread.run") on 3.11+; faulthandler bare ones."""
    return function.rsplit(".", 1)[-1]
