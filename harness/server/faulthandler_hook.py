"""Server-side half of the forensics fallback: dump every thread's stack on SIGUSR2.

When py-spy is not available (or not allowed to ptrace), the harness can still learn where a
server is stuck by sending SIGUSR2 and reading the dump that `faulthandler` writes. This module
arms that: if the environment variable `HANGBENCH_FORENSICS_DIR` is set, `install_from_env()`
registers a SIGUSR2 handler that appends the Python stack of every thread to
`$HANGBENCH_FORENSICS_DIR/<pid>.txt`.

Why faulthandler and not a Python signal handler: faulthandler writes from the C-level signal
handler, so it works while the main thread is blocked in a C call (accept, recv, a lock) and
while the GIL is held by a thread spinning in C code; a Python-level handler would wait for the
main thread to return to the interpreter, which is exactly what a hung server does not do.

Shape: one idempotent function, called by the server process at start and again by strategies
in their worker initializers. A forked worker inherits the registration but also the parent's
file, so it would write its stack into the parent's file; calling `install_from_env()` in the
worker notices the new pid and re-registers with `<worker pid>.txt`. A spawned worker starts
clean and simply installs.

Server-side module: standard library only, importable from Python 3.8 up. It never raises:
forensics are a diagnostic aid and must not stop a server from serving; a problem is reported
as one line on stderr.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import IO, Optional

ENV_DIR = "HANGBENCH_FORENSICS_DIR"
DUMP_SIGNAL_NAME = "SIGUSR2"

# The file faulthandler writes into and the pid it was opened for. faulthandler keeps its own
# reference to the file, but holding one here lets a re-install close the inherited copy.
_installed_file: Optional[IO[str]] = None
_installed_pid: Optional[int] = None


def dump_path(directory: str, pid: int) -> str:
    """Where process `pid` writes its stack dumps under `directory`."""
    return os.path.join(directory, "%d.txt" % pid)


def install_from_env() -> Optional[str]:
    """Arm the SIGUSR2 stack dump if `HANGBENCH_FORENSICS_DIR` is set; return the dump path.

    Safe to call any number of times, in the server and in forked or spawned workers. Returns
    None (and does nothing) when the variable is unset or the platform has no SIGUSR2.
    """
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return None
    return install(directory)


def install(directory: str) -> Optional[str]:
    """Arm the SIGUSR2 stack dump into `directory/<pid>.txt`; see `install_from_env`."""
    global _installed_file, _installed_pid
    signum = getattr(signal, DUMP_SIGNAL_NAME, None)
    if signum is None or not hasattr(faulthandler, "register"):
        return None  # Windows: no user signals; nothing to arm.
    pid = os.getpid()
    path = dump_path(directory, pid)
    if _installed_pid == pid and _installed_file is not None and not _installed_file.closed:
        return path  # Already armed in this process.
    try:
        os.makedirs(directory, exist_ok=True)
        new_file = open(path, "a")  # noqa: SIM115 - faulthandler keeps writing into it for the process's life
        faulthandler.register(signum, file=new_file, all_threads=True, chain=False)
    except (OSError, RuntimeError, ValueError) as error:
        _warn("cannot arm SIGUSR2 stack dumps into %s: %s" % (path, error))
        return None
    inherited = _installed_file
    _installed_file, _installed_pid = new_file, pid
    if inherited is not None and inherited is not new_file:
        _close_quietly(inherited)  # In a forked worker: our copy of the parent's file.
    return path


def _close_quietly(stream: IO[str]) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _warn(message: str) -> None:
    try:
        sys.stderr.write("hangbench forensics: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
