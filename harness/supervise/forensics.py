"""Capture where a server is stuck, and say it in one phrase.

A hang is a finding (DESIGN.md §4), and a finding needs evidence. `capture()` records, for
every process of a server tree:

* the Python stack of every thread, from `py-spy dump` (with `--native`, so a thread blocked in
  a C call shows the libc function, e.g. `recv`), or, when py-spy is missing or fails, from the
  SIGUSR2 dump that `harness.server.faulthandler_hook` arms inside the server;
* per thread (kernel task): its state letter, wait channel and the system call it sits in, read
  from /proc -- the kernel's view, which needs no cooperation from the process;
* its open file descriptors, with TCP sockets resolved to addresses and states.

`summarize()` turns that into one short phrase such as
"12/16 threads in recv (connection.py:88) across 12 processes; 4 idle": the most common
(blocking call, innermost frame of code that is not the standard library) among threads that
are not merely idle pool/executor workers waiting for a task.

Shape: records are frozen dataclasses that `Forensics.to_dict()` turns into plain JSON; capture
never raises for one process that cannot be inspected (it records the error and goes on), and
the whole capture is bounded by `timeout_s`. Readers of /proc return None off Linux.
A process without a SIGUSR2 handler is never sent SIGUSR2 (the default action would kill it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..server.faulthandler_hook import ENV_DIR, dump_path

PathArg = Union[str, "os.PathLike[str]"]
METHODS = ("auto", "py-spy", "faulthandler")
_PARALLEL_DUMPS = 4
_FAULTHANDLER_SETTLE_S = 0.1  # the dump file must stop growing this long to count as complete
_POLL_S = 0.02


class ForensicsError(Exception):
    """Forensics cannot be captured as asked (bad argument); per-process failures are recorded
    in the result instead of raised."""


# --------------------------------------------------------------------------- records


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

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- capture


def capture(
    pids: Iterable[int],
    out_dir: Optional[PathArg] = None,
    timeout_s: float = 15.0,
    method: str = "auto",
    py_spy: Optional[str] = None,
    faulthandler_dir: Optional[str] = None,
) -> Forensics:
    """Capture stacks, kernel state and fds of `pids`; write JSON under `out_dir` if given.

    `method`: "auto" (py-spy if found, else faulthandler), "py-spy" or "faulthandler".
    `py_spy`: path of the py-spy executable (default: on PATH, else beside this interpreter).
    `faulthandler_dir`: where SIGUSR2 dumps are written (default: the target's own
    HANGBENCH_FORENSICS_DIR, then ours).
    """
    if method not in METHODS:
        raise ForensicsError("forensics method must be one of %s (got %r)" % (", ".join(METHODS), method))
    if timeout_s <= 0:
        raise ForensicsError("forensics timeout must be positive (got %r)" % timeout_s)
    started = time.monotonic()
    deadline = started + timeout_s
    spy = (py_spy or find_py_spy()) if method != "faulthandler" else None
    if method == "py-spy" and spy is None:
        raise ForensicsError("py-spy not found: install it (pip install py-spy) or use method='auto'")
    unique = list(dict.fromkeys(int(p) for p in pids))
    with ThreadPoolExecutor(max_workers=_PARALLEL_DUMPS) as pool:
        tables = _SocketTables()
        dumps = tuple(pool.map(lambda pid: _capture_one(pid, spy, faulthandler_dir, deadline, tables), unique))
    result = Forensics(time.time(), time.monotonic() - started, dumps, summarize_processes(dumps))
    if out_dir is not None:
        result = dataclasses.replace(result, path=str(_write(result, Path(out_dir))))
    return result


def find_py_spy() -> Optional[str]:
    """py-spy on PATH, else next to the running interpreter (an unactivated venv)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _capture_one(
    pid: int, spy: Optional[str], fh_dir: Optional[str], deadline: float, tables: _SocketTables
) -> ProcessDump:
    errors: List[str] = []
    threads: Tuple[ThreadDump, ...] = ()
    source = "none"
    if time.monotonic() >= deadline:
        errors.append("no stack: the forensics time budget was used up before this process")
    elif spy is not None:
        threads, source, error = _py_spy_stacks(spy, pid, deadline)
        if error:
            errors.append(error)
    if not threads and time.monotonic() < deadline and not _is_zombie(pid):
        threads, error = _faulthandler_stacks(pid, fh_dir, deadline)
        source = "faulthandler" if threads else source
        if error:
            errors.append(error)
    state, wchan = _proc_state(pid)
    fds: Tuple[FdInfo, ...] = ()
    if time.monotonic() < deadline:
        fds = _fds(pid, tables)
    else:
        errors.append("no fd table: the forensics time budget was used up")
    return ProcessDump(
        pid=pid,
        cmdline=_cmdline(pid),
        state=state,
        wchan=wchan,
        stack_source=source,
        threads=threads,
        tasks=_tasks(pid),
        fds=fds,
        errors=tuple(errors),
    )


def _write(result: Forensics, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    first = result.processes[0].pid if result.processes else 0
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(result.captured_at))
    path = out_dir / ("forensics-%d-%s-%03d.json" % (first, stamp, int(result.captured_at * 1000) % 1000))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=1)
    return path


# --------------------------------------------------------------------------- py-spy


def _py_spy_stacks(spy: str, pid: int, deadline: float) -> Tuple[Tuple[ThreadDump, ...], str, Optional[str]]:
    """Try `py-spy dump --native`, then plain `py-spy dump`; (threads, source, error)."""
    error = None
    for extra, source in ((["--native"], "py-spy --native"), ([], "py-spy")):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return (), "none", "py-spy: time budget used up"
        threads, error = _run_py_spy([spy, "dump", "--json", "--pid", str(pid)] + extra, remaining)
        if threads:
            return threads, source, None
    return (), "none", error


def _run_py_spy(argv: List[str], timeout_s: float) -> Tuple[Tuple[ThreadDump, ...], Optional[str]]:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return (), "%s timed out after %.1f s" % (" ".join(argv[1:]), timeout_s)
    except OSError as error:
        return (), "cannot run py-spy: %s" % error
    if done.returncode != 0:
        message = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return (), "%s failed: %s" % (" ".join(argv[1:]), message[-1] if message else "exit %d" % done.returncode)
    try:
        return tuple(_thread_from_json(t) for t in json.loads(done.stdout)), None
    except (ValueError, KeyError, TypeError) as error:
        return (), "cannot parse py-spy output: %s" % error


def _thread_from_json(raw: Dict[str, Any]) -> ThreadDump:
    frames = tuple(
        Frame(
            function=str(f.get("name", "?")),
            filename=str(f.get("filename") or f.get("short_filename") or "?"),
            line=int(f.get("line") or 0),
            native=f.get("module") is not None,
        )
        for f in raw.get("frames", ())
    )
    return ThreadDump(tid=raw.get("os_thread_id"), name=raw.get("thread_name"), frames=frames, active=raw.get("active"))


# --------------------------------------------------------------------------- faulthandler

_FH_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)")
_FH_FRAME = re.compile(r'^\s+File "(.*)", line (\d+) in (.*)$')


def _faulthandler_stacks(
    pid: int, fh_dir: Optional[str], deadline: float
) -> Tuple[Tuple[ThreadDump, ...], Optional[str]]:
    """Send SIGUSR2 (only if the process catches it) and read what faulthandler appends."""
    directory = _environ(pid).get(ENV_DIR) or fh_dir or os.environ.get(ENV_DIR)
    if not directory:
        return (), "no faulthandler dump: %s is not set for pid %d" % (ENV_DIR, pid)
    if not _catches(pid, signal.SIGUSR2):
        return (), (
            "no faulthandler dump: pid %d does not handle SIGUSR2 (did it call "
            "harness.server.faulthandler_hook.install_from_env()?)" % pid
        )
    path = dump_path(directory, pid)
    before = _size(path)
    try:
        os.kill(pid, signal.SIGUSR2)
    except OSError as error:
        return (), "cannot send SIGUSR2 to %d: %s" % (pid, error)
    text = _read_growth(path, before, deadline)
    if not text:
        return (), (
            "no faulthandler dump appeared in %s (a forked worker that did not re-run "
            "install_from_env() writes into its parent's file)" % path
        )
    return parse_faulthandler(text), None


def _read_growth(path: str, offset: int, deadline: float) -> str:
    """What is appended to `path` after `offset`, once it stops growing (bounded by deadline)."""
    size, stable_since = offset, time.monotonic()
    while time.monotonic() < deadline:
        now_size = _size(path)
        if now_size != size:
            size, stable_since = now_size, time.monotonic()
        elif size > offset and time.monotonic() - stable_since >= _FAULTHANDLER_SETTLE_S:
            break
        time.sleep(_POLL_S)
    if size <= offset:
        return ""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size - offset).decode(errors="replace")


def parse_faulthandler(text: str) -> Tuple[ThreadDump, ...]:
    """Parse `faulthandler.dump_traceback(all_threads=True)` output (innermost frame first)."""
    threads: List[ThreadDump] = []
    name: Optional[str] = None
    frames: List[Frame] = []
    for line in text.splitlines():
        header = _FH_THREAD.match(line)
        if header:
            if name is not None:
                threads.append(ThreadDump(tid=None, name=name, frames=tuple(frames)))
            name, frames = header.group(1), []
            continue
        frame = _FH_FRAME.match(line)
        if frame and name is not None:
            frames.append(Frame(function=frame.group(3), filename=frame.group(1), line=int(frame.group(2))))
    if name is not None:
        threads.append(ThreadDump(tid=None, name=name, frames=tuple(frames)))
    return tuple(threads)


def _catches(pid: int, signum: int) -> bool:
    """True if /proc/PID/status says the process has a handler for `signum`."""
    for line in _read_text("/proc/%d/status" % pid).splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


# --------------------------------------------------------------------------- /proc readers


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _environ(pid: int) -> Dict[str, str]:
    pairs = (item.partition("=") for item in _read_text("/proc/%d/environ" % pid).split("\0") if item)
    return {key: value for key, _, value in pairs}


def _cmdline(pid: int) -> str:
    return " ".join(_read_text("/proc/%d/cmdline" % pid).split("\0")).strip()


def _stat_fields(path: str) -> Tuple[str, List[str]]:
    """(comm, fields after comm) of a /proc stat file; ("", []) if unreadable."""
    raw = _read_text(path)
    if ")" not in raw:
        return "", []
    return raw[raw.find("(") + 1 : raw.rfind(")")], raw[raw.rfind(")") + 2 :].split()


def _proc_state(pid: int) -> Tuple[Optional[str], Optional[str]]:
    _, fields = _stat_fields("/proc/%d/stat" % pid)
    return (fields[0] if fields else None), _wchan("/proc/%d/wchan" % pid)


def _is_zombie(pid: int) -> bool:
    return _proc_state(pid)[0] == "Z"


def _wchan(path: str) -> Optional[str]:
    value = _read_text(path).strip()
    return value if value and value != "0" else None


def _tasks(pid: int) -> Tuple[TaskInfo, ...]:
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid) if t.isdigit())
    except OSError:
        return ()
    tasks = []
    for tid in tids:
        base = "/proc/%d/task/%d" % (pid, tid)
        comm, fields = _stat_fields(base + "/stat")
        if fields:
            tasks.append(
                TaskInfo(
                    tid=tid,
                    comm=comm,
                    state=fields[0],
                    wchan=_wchan(base + "/wchan"),
                    syscall=_syscall(base + "/syscall"),
                )
            )
    return tuple(tasks)


def _syscall(path: str) -> Optional[str]:
    first = _read_text(path).split(" ", 1)[0].strip()
    if first == "running":
        return "running"
    if not first or first.startswith("-"):
        return None  # unreadable, or blocked outside a system call
    try:
        number = int(first)
    except ValueError:
        return None
    return _SYSCALLS.get(platform.machine(), {}).get(number, "syscall %d" % number)


class _SocketTables:
    """Socket tables by network namespace, read once per capture: /proc/PID/net/tcp can hold
    tens of thousands of TIME_WAIT rows after a connection-per-request run, and every process
    of a server tree shares one namespace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: Dict[str, Dict[str, str]] = {}

    def get(self, pid: int) -> Dict[str, str]:
        try:
            namespace = os.readlink("/proc/%d/ns/net" % pid)
        except OSError:
            namespace = "pid:%d" % pid
        with self._lock:  # one reader per namespace; the others wait for its table
            if namespace not in self._tables:
                self._tables[namespace] = _socket_table(pid)
            return self._tables[namespace]


def _fds(pid: int, tables: Optional[_SocketTables] = None) -> Tuple[FdInfo, ...]:
    base = "/proc/%d/fd" % pid
    try:
        names = sorted(int(n) for n in os.listdir(base) if n.isdigit())
    except OSError:
        return ()
    sockets = (tables or _SocketTables()).get(pid)
    fds = []
    for fd in names:
        try:
            target = os.readlink("%s/%d" % (base, fd))
        except OSError:
            continue
        inode = target[8:-1] if target.startswith("socket:[") else None
        fds.append(FdInfo(fd=fd, target=target, detail=sockets.get(inode) if inode else None))
    return tuple(fds)


_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@dataclass(frozen=True)
class TcpEntry:
    """One row of /proc/PID/net/tcp{,6}: a TCP socket in the process's network namespace."""

    inode: str  # "0" for a connection still in a listener's accept queue (not accepted yet)
    kind: str  # "tcp" or "tcp6"
    local: str  # "127.0.0.1:8080"
    local_port: int
    remote: str
    remote_port: int
    state: str  # "ESTABLISHED", "LISTEN", ...


def tcp_entries(pid: int) -> List[TcpEntry]:
    """The TCP sockets of `pid`'s network namespace (empty off Linux)."""
    entries = []
    for kind, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in _read_text("/proc/%d/net/%s" % (pid, kind)).splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9:
                local, remote = _hex_addr(cols[1], family), _hex_addr(cols[2], family)
                entries.append(
                    TcpEntry(
                        cols[9], kind, local, _port(cols[1]), remote, _port(cols[2]), _TCP_STATES.get(cols[3], cols[3])
                    )
                )
    return entries


def _port(hex_addr: str) -> int:
    try:
        return int(hex_addr.rpartition(":")[2], 16)
    except ValueError:
        return -1


def _socket_table(pid: int) -> Dict[str, str]:
    """inode -> "tcp local <- remote STATE" / "unix path" for the process's network namespace."""
    table = {e.inode: "%s %s <- %s %s" % (e.kind, e.local, e.remote, e.state) for e in tcp_entries(pid)}
    for line in _read_text("/proc/%d/net/unix" % pid).splitlines()[1:]:
        cols = line.split()
        if len(cols) > 6:
            table[cols[6]] = "unix %s" % (cols[7] if len(cols) > 7 else "(unnamed)")
    return table


def _hex_addr(text: str, family: int) -> str:
    """Decode /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"."""
    host_hex, _, port_hex = text.partition(":")
    try:
        raw = bytes.fromhex(host_hex)
        # Each 32-bit word is in host (little-endian on x86/arm) byte order.
        if sys.byteorder == "little":
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        return "%s:%d" % (socket.inet_ntop(family, raw), int(port_hex, 16))
    except (ValueError, OSError):
        return text


# --------------------------------------------------------------------------- summary

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


# Blocking system calls worth naming; others are shown as "syscall N".
_SYSCALLS: Dict[str, Dict[int, str]] = {
    "x86_64": {
        0: "read",
        1: "write",
        3: "close",
        7: "poll",
        19: "readv",
        20: "writev",
        23: "select",
        24: "sched_yield",
        34: "pause",
        35: "nanosleep",
        40: "sendfile",
        42: "connect",
        43: "accept",
        44: "sendto",
        45: "recvfrom",
        46: "sendmsg",
        47: "recvmsg",
        61: "wait4",
        65: "semop",
        70: "msgrcv",
        72: "fcntl",
        73: "flock",
        74: "fsync",
        128: "rt_sigtimedwait",
        130: "rt_sigsuspend",
        202: "futex",
        219: "restart_syscall",
        220: "semtimedop",
        230: "clock_nanosleep",
        232: "epoll_wait",
        247: "waitid",
        257: "openat",
        270: "pselect6",
        271: "ppoll",
        281: "epoll_pwait",
        288: "accept4",
        299: "recvmmsg",
        307: "sendmmsg",
        426: "io_uring_enter",
        441: "epoll_pwait2",
        449: "futex_waitv",
    },
    "aarch64": {
        22: "epoll_pwait",
        32: "flock",
        56: "openat",
        57: "close",
        63: "read",
        64: "write",
        65: "readv",
        66: "writev",
        72: "pselect6",
        73: "ppoll",
        82: "fsync",
        95: "waitid",
        98: "futex",
        101: "nanosleep",
        115: "clock_nanosleep",
        124: "sched_yield",
        128: "restart_syscall",
        133: "rt_sigsuspend",
        137: "rt_sigtimedwait",
        188: "msgrcv",
        192: "semtimedop",
        193: "semop",
        202: "accept",
        203: "connect",
        206: "sendto",
        207: "recvfrom",
        211: "sendmsg",
        212: "recvmsg",
        242: "accept4",
        243: "recvmmsg",
        260: "wait4",
        269: "sendmmsg",
        426: "io_uring_enter",
        441: "epoll_pwait2",
        449: "futex_waitv",
    },
}
