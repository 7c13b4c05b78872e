"""Python stacks of a live process: `py-spy dump` first, the SIGUSR2/faulthandler fallback after.

py-spy reads the stacks from outside (ptrace), with `--native` so that a thread blocked in a C
call shows the libc function (e.g. `recv`); it needs nothing from the server. The fallback asks
the server itself: `harness.server.faulthandler_hook` arms a SIGUSR2 handler that appends every
thread's stack to a file, which is read back once it stops growing. The fallback runs code
inside the server, from a signal handler, while its threads run: it has crashed a server (a
SIGSEGV on Python 3.12.1 with 20 threads), so it is used only when py-spy is missing or fails,
and the capture records which processes it was used on. A process without a SIGUSR2 handler is
never sent SIGUSR2 (the default action would kill it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..server.faulthandler_hook import ENV_DIR, dump_path
from .dumps import Frame, ThreadDump
from .procfs import environ, file_size, read_text

_FAULTHANDLER_SETTLE_S = 0.1  # the dump file must stop growing this long to count as complete
_POLL_S = 0.02


def find_py_spy() -> Optional[str]:
    """py-spy on PATH, else next to the running interpreter (an unactivated venv)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def py_spy_stacks(spy: str, pid: int, deadline: float) -> Tuple[Tuple[ThreadDump, ...], str, Optional[str]]:
    """Try `py-spy dump --native`, then plain `py-spy dump`; (threads, source, error)."""
    error = None
    for extra, source in ((["--native"], "py-spy --native"), ([], "py-spy")):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return (), "none", "py-spy: time budget used up"
        threads, error = _run_py_spy([spy, "dump", "--json", "--pid", str(pid), *extra], remaining)
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


def faulthandler_stacks(
    pid: int, fh_dir: Optional[str], deadline: float
) -> Tuple[Tuple[ThreadDump, ...], Optional[str]]:
    """Send SIGUSR2 (only if the process catches it) and read what faulthandler appends."""
    directory = environ(pid).get(ENV_DIR) or fh_dir or os.environ.get(ENV_DIR)
    if not directory:
        return (), "no faulthandler dump: %s is not set for pid %d" % (ENV_DIR, pid)
    if not _catches(pid, signal.SIGUSR2):
        return (), (
            "no faulthandler dump: pid %d does not handle SIGUSR2 (did it call "
            "harness.server.faulthandler_hook.install_from_env()?)" % pid
        )
    path = dump_path(directory, pid)
    before = file_size(path)
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
        now_size = file_size(path)
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
    for line in read_text("/proc/%d/status" % pid).splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False
