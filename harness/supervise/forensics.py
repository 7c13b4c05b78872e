"""Capture where a server is stuck: stacks, kernel state and fds of every process of its tree.

`capture()` records, for every process (see `dumps` for the records):

* the Python stack of every thread (see `stacks`: py-spy, else the SIGUSR2/faulthandler
  fallback, recorded as such in `Forensics.fallback_pids` and `stack_method`);
* per thread (kernel task): its state letter, wait channel and the system call it sits in, and
  its open file descriptors with TCP sockets resolved (see `procfs`);

and says it in one phrase (see `diagnosis`). Capture never raises for one process that cannot
be inspected (it records the error and goes on), the whole capture is bounded by `timeout_s`,
and a JSON file that cannot be written (a full disk) is noted in `write_error`, never raised:
the capture itself is still returned to the run's record.

This module is the orchestration; the names tests and callers use are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from .diagnosis import summarize, summarize_processes
from .dumps import FdInfo, Forensics, Frame, ProcessDump, TaskInfo, ThreadDump
from .procfs import SocketTables, TcpEntry, cmdline, fds, is_zombie, proc_state, tasks, tcp_entries
from .stacks import faulthandler_stacks, find_py_spy, parse_faulthandler, py_spy_stacks

__all__ = [
    "METHODS",
    "FdInfo",
    "Forensics",
    "ForensicsError",
    "Frame",
    "ProcessDump",
    "TaskInfo",
    "TcpEntry",
    "ThreadDump",
    "capture",
    "find_py_spy",
    "parse_faulthandler",
    "summarize",
    "summarize_processes",
    "tcp_entries",
]

PathArg = Union[str, "os.PathLike[str]"]
METHODS = ("auto", "py-spy", "faulthandler")
_PARALLEL_DUMPS = 4


class ForensicsError(Exception):
    """Forensics cannot be captured as asked (bad argument); per-process failures are recorded
    in the result instead of raised."""


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
        tables = SocketTables()
        dumps = tuple(pool.map(lambda pid: _capture_one(pid, spy, faulthandler_dir, deadline, tables), unique))
    fallback = tuple(d.pid for d in dumps if d.stack_source == "faulthandler")
    result = Forensics(
        time.time(),
        time.monotonic() - started,
        dumps,
        summarize_processes(dumps),
        stack_method=_method_used(method, spy, fallback),
        fallback_pids=fallback,
    )
    if out_dir is not None:
        try:
            result = dataclasses.replace(result, path=str(_write(result, Path(out_dir))))
        except OSError as error:
            result = dataclasses.replace(
                result, write_error="cannot write the forensics under %s: %s" % (out_dir, error.strerror or error)
            )
    return result


def _method_used(method: str, spy: Optional[str], fallback: Tuple[int, ...]) -> str:
    """How the stacks were taken, in a few words for the record."""
    if spy is None:
        why = "asked for" if method == "faulthandler" else "py-spy not found"
        return "faulthandler (%s)" % why
    if fallback:
        return "py-spy, faulthandler fallback for %d process(es) py-spy could not read" % len(fallback)
    return "py-spy"


def _capture_one(
    pid: int, spy: Optional[str], fh_dir: Optional[str], deadline: float, tables: SocketTables
) -> ProcessDump:
    errors: List[str] = []
    threads: Tuple[ThreadDump, ...] = ()
    source = "none"
    if time.monotonic() >= deadline:
        errors.append("no stack: the forensics time budget was used up before this process")
    elif spy is not None:
        threads, source, error = py_spy_stacks(spy, pid, deadline)
        if error:
            errors.append(error)
    if not threads and time.monotonic() < deadline and not is_zombie(pid):
        threads, error = faulthandler_stacks(pid, fh_dir, deadline)
        source = "faulthandler" if threads else source
        if error:
            errors.append(error)
    state, wchan = proc_state(pid)
    open_fds: Tuple[FdInfo, ...] = ()
    if time.monotonic() < deadline:
        open_fds = fds(pid, tables)
    else:
        errors.append("no fd table: the forensics time budget was used up")
    return ProcessDump(
        pid=pid,
        cmdline=cmdline(pid),
        state=state,
        wchan=wchan,
        stack_source=source,
        threads=threads,
        tasks=tasks(pid),
        fds=open_fds,
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
