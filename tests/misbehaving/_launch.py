"""Test kit for the supervisor and forensics tests (not a plugin): how to launch a plugin under
the server stub or the real `harness.server`, and how to check that processes are gone.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Iterable, List

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUB = HERE / "_server_stub.py"

# The stub keeps the tests independent of harness.server.process; the real server is tested too.
LAUNCHERS: List[str] = ["stub"] + (["server"] if importlib.util.find_spec("harness.server.process") else [])


def plugin_path(name: str) -> str:
    return str(HERE / ("%s.py" % name))


def argv_for(plugin: str, launcher: str = "stub") -> List[str]:
    """Command line that runs misbehaving plugin `plugin` (file stem) as a server."""
    if launcher == "stub":
        return [sys.executable, str(STUB), "--plugin", plugin_path(plugin), "--port", "0"]
    return [
        sys.executable,
        "-m",
        "harness.server",
        "--strategy",
        plugin_path(plugin),
        "--port",
        "0",
        "--workers",
        "2",
        "--log-level",
        "WARNING",
    ]


def snapshot(pids: Iterable[int]) -> List[psutil.Process]:
    """Processes identified by pid + creation time, so a recycled pid is not mistaken for one."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return procs


def still_there(procs: Iterable[psutil.Process]) -> List[int]:
    """Pids (of `procs`) that still exist as the same process, zombies included."""
    return [p.pid for p in procs if p.is_running()]


def wait_for(predicate, timeout_s: float = 10.0, pause_s: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout_s`; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(pause_s)
    return bool(predicate())
