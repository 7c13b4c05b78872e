"""Emulate another OS's socket semantics on Linux, so a platform-specific hang reproduces here.

Why
---
The article's server passes accepted sockets to `multiprocessing.Pool.apply_async`. Pickling a
socket goes through `multiprocessing.resource_sharer`: a thread in the parent listens on an
AF_UNIX socket (CPython <= 3.12: `listen(1)`, 3.13: `listen(128)`), and each pool worker connects
to it while unpickling its task, to receive the fd by SCM_RIGHTS. On macOS a connect to a full
AF_UNIX listen queue is refused at once, so with concurrent requests a worker dies while
unpickling (`ConnectionRefusedError`, swallowed by the pool's `except (EOFError, OSError)`), the
task is lost and its client waits for ever (CPython gh-101225). Linux queues instead, so the same
code works. `--emulate macos-unix-refusal` gives a Linux process macOS's behaviour so that the
hang can be measured on Linux.

The kernel facts this relies on (measured here with `python harness/server/emulate_lab.py probe`, Linux
6.18, Python 3.8-3.13; the checks are the same in Linux's `unix_stream_connect` since 2.6):

* Linux, AF_UNIX SOCK_STREAM, `listen(b)` with 0 <= b <= net.core.somaxconn: **b + 1**
  connections queue un-accepted (listen(0): 1, listen(1): 2, listen(128): 129). Python turns a
  negative backlog into 0. The next `connect()` either sleeps until the listener accepts (a
  blocking socket; bounded only by SO_SNDTIMEO, after which it fails with EAGAIN) or fails at
  once with EAGAIN (a non-blocking socket -- and also a Python socket with a timeout, which
  CPython puts in non-blocking mode: `BlockingIOError`, not `socket.timeout`). Linux never
  answers ECONNREFUSED for a full queue.
* macOS (XNU `solisten` / `sonewconn_internal`, default `kern.ipc.soqlimitcompat=1`): a backlog
  b <= 0 or b > kern.ipc.somaxconn (128) becomes 128; a new connection is refused when
  `so_qlen >= so_qlimit`, so **b** connections queue (listen(1): 1) and the next `connect()`
  fails at once with ECONNREFUSED, whatever the socket's blocking mode.

How (name `macos-unix-refusal`), for `socket.socket` objects of family AF_UNIX only:

* `listen(b)` calls Linux `listen(macos_queue_limit(b) - 1)`, so exactly as many connections
  queue as on macOS (listen(1) -> Linux listen(0) -> 1 pending connection).
* `connect()` / `connect_ex()` try a non-blocking connect, then restore the socket's timeout.
  EAGAIN (queue full) becomes ECONNREFUSED; EINPROGRESS (not expected for AF_UNIX) is awaited
  as the original mode would have awaited it. Other families keep their own semantics.

The patches live on the `socket.socket` class. Fork children inherit them. Fresh interpreters
(spawn workers, the forkserver process, any subprocess) get them from `_emulate_site/
sitecustomize.py`, which `apply()` / `child_env()` put first on PYTHONPATH, with the emulation
names in HANGBENCH_EMULATE. Set HANGBENCH_EMULATE_LOG to a file path (or `stderr`) to get one
line per emulated refusal from every process.

Standard library only; runs on Python 3.8 and later, and is loaded by file path too (see
`_emulate_site/sitecustomize.py`). This module is only the runtime patch and its environment;
the experiments that measure what it emulates (`probe`, `reproduce`) are a separate command,
`python harness/server/emulate_lab.py --help`.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import sys
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

ENV_VAR = "HANGBENCH_EMULATE"
LOG_ENV_VAR = "HANGBENCH_EMULATE_LOG"
MACOS_UNIX_REFUSAL = "macos-unix-refusal"
KNOWN: Dict[str, str] = {
    MACOS_UNIX_REFUSAL: "AF_UNIX connect to a full listen queue fails at once with "
    "ECONNREFUSED, and listen(b) queues b connections, as on macOS",
}
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_emulate_site")
MACOS_SOMAXCONN = 128  # kern.ipc.somaxconn default

# State is kept on the patched class, not in this module: sitecustomize loads this file under
# another module name, and both copies must agree on what is installed.
_STATE_ATTR = "_hangbench_emulate"
_PATCHED = ("connect", "connect_ex", "listen")
_FULL_QUEUE_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK)


# --- names and environment -------------------------------------------------------------------


def validate(names: Iterable[str]) -> List[str]:
    """Return `names` without duplicates; raise ValueError naming the known ones if unknown."""
    result: List[str] = []
    for name in names:
        if name not in KNOWN:
            known = ", ".join(sorted(KNOWN))
            raise ValueError(f"unknown emulation {name!r}; known: {known}")
        if name not in result:
            result.append(name)
    return result


def parse(value: str) -> List[str]:
    """Split a comma-separated HANGBENCH_EMULATE value and validate it."""
    return validate(part.strip() for part in value.split(",") if part.strip())


def child_env(names: Iterable[str], base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Return a copy of `base` (default os.environ) that makes a fresh interpreter emulate."""
    env = dict(os.environ if base is None else base)
    _export(env, validate(names))
    return env


def _export(env: Any, names: Sequence[str]) -> None:
    """Name `names` in `env` and put the sitecustomize directory first on its PYTHONPATH."""
    if names:
        env[ENV_VAR] = ",".join(names)
        env["PYTHONPATH"] = _with_site_dir(env.get("PYTHONPATH", ""))


def _with_site_dir(pythonpath: str) -> str:
    parts = [p for p in pythonpath.split(os.pathsep) if p and p != SITE_DIR]
    return os.pathsep.join([SITE_DIR, *parts])


def _without_site_dir(pythonpath: str) -> str:
    return os.pathsep.join(p for p in pythonpath.split(os.pathsep) if p and p != SITE_DIR)


# --- install / remove ------------------------------------------------------------------------


def apply(names: Iterable[str]) -> None:
    """Emulate `names` in this process and in every process it starts from now on.

    Call it early in the server process, before any Pool, forkserver or resource-sharer
    listener exists. Patches `socket.socket` here and exports HANGBENCH_EMULATE and PYTHONPATH
    in os.environ for spawn/forkserver children. Idempotent; apply([]) does nothing.
    """
    wanted = validate(names)
    if not wanted:
        return
    _warn_if_children_cannot_follow()
    _export(os.environ, wanted)
    _install(wanted)


def apply_from_environment() -> List[str]:
    """Install what HANGBENCH_EMULATE names (used by sitecustomize); return the names."""
    wanted = parse(os.environ.get(ENV_VAR, ""))
    _install(wanted)
    return wanted


def active() -> List[str]:
    """Names of the emulations installed in this process."""
    state = socket.socket.__dict__.get(_STATE_ATTR)
    return list(state["names"]) if state else []


def restore() -> None:
    """Undo apply() in this process and its environment (for tests; children keep theirs)."""
    state = socket.socket.__dict__.get(_STATE_ATTR)
    if state:
        for attr, previous in state["saved"].items():
            if previous is None:
                delattr(socket.socket, attr)  # inherited from _socket.socket again
            else:
                setattr(socket.socket, attr, previous)
        delattr(socket.socket, _STATE_ATTR)
    os.environ.pop(ENV_VAR, None)
    pythonpath = _without_site_dir(os.environ.get("PYTHONPATH", ""))
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    else:
        os.environ.pop("PYTHONPATH", None)


def _install(names: Sequence[str]) -> None:
    if not names or socket.socket.__dict__.get(_STATE_ATTR):
        return
    saved = {attr: socket.socket.__dict__.get(attr) for attr in _PATCHED}
    previous = {attr: getattr(socket.socket, attr) for attr in _PATCHED}
    connect = _make_connect(previous["connect"], previous["connect_ex"])
    # Patching methods of the stdlib socket class is the point of emulation (children inherit
    # it), and mypy rejects any assignment to a method; restore() undoes these three.
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _make_connect_ex(previous["connect_ex"])  # type: ignore[method-assign]
    socket.socket.listen = _make_listen(previous["listen"])  # type: ignore[method-assign]
    setattr(socket.socket, _STATE_ATTR, {"names": tuple(names), "saved": saved})


def _warn_if_children_cannot_follow() -> None:
    if sys.flags.ignore_environment or sys.flags.no_site:
        warnings.warn(
            "Python runs with -E/-I/-S: spawn and forkserver children will ignore "
            f"{ENV_VAR} and will not emulate; fork children still will",
            RuntimeWarning,
            stacklevel=3,
        )


# --- the macOS semantics ---------------------------------------------------------------------


def macos_queue_limit(backlog: int) -> int:
    """How many un-accepted connections macOS lets queue on a listener given `backlog`."""
    return MACOS_SOMAXCONN if backlog <= 0 or backlog > MACOS_SOMAXCONN else backlog


def linux_backlog_for_macos(backlog: int) -> int:
    """The Linux listen() backlog that queues as many AF_UNIX connections as macOS would."""
    return macos_queue_limit(backlog) - 1  # Linux queues backlog + 1


def _is_unix_stream(sock: socket.socket) -> bool:
    streams = (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
    return sock.family == socket.AF_UNIX and sock.type in streams


def _make_listen(previous: Callable[..., None]) -> Callable[..., None]:
    def listen(self: socket.socket, *args: int) -> None:
        if not _is_unix_stream(self):
            return previous(self, *args)
        backlog = args[0] if args else min(socket.SOMAXCONN, 128)  # CPython's default
        return previous(self, linux_backlog_for_macos(backlog))

    listen.__doc__ = "listen(), with macOS's AF_UNIX queue length (hangbench emulation)."
    return listen


def _make_connect_ex(previous: Callable[[socket.socket, Any], int]) -> Callable[..., int]:
    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family != socket.AF_UNIX:
            return previous(self, address)
        err = refusing_connect_ex(self, address, previous)
        return errno.EWOULDBLOCK if err is None else err

    connect_ex.__doc__ = "connect_ex(), refusing a full AF_UNIX queue (hangbench emulation)."
    return connect_ex


def _make_connect(
    previous: Callable[[socket.socket, Any], None],
    previous_ex: Callable[[socket.socket, Any], int],
) -> Callable[..., None]:
    def connect(self: socket.socket, address: Any) -> None:
        if self.family != socket.AF_UNIX:
            return previous(self, address)
        err = refusing_connect_ex(self, address, previous_ex)
        if err is None:
            raise socket.timeout("timed out")
        if err:
            raise OSError(err, os.strerror(err))
        return None

    connect.__doc__ = "connect(), refusing a full AF_UNIX queue (hangbench emulation)."
    return connect


def refusing_connect_ex(
    sock: socket.socket,
    address: Any,
    connect_ex: Callable[[socket.socket, Any], int] = _socket.socket.connect_ex,
) -> Optional[int]:
    """Connect without ever waiting for queue room: return an errno (0 = connected).

    EAGAIN from Linux means the listener's queue is full: report ECONNREFUSED, as macOS does.
    Returns None if an in-progress connect outlived the socket's timeout.
    """
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        err: Optional[int] = connect_ex(sock, address)
        if err == errno.EINPROGRESS and timeout != 0.0:
            err = _finish_connect(sock, timeout)
    finally:
        sock.settimeout(timeout)
    if err in _FULL_QUEUE_ERRNOS:
        _log_refusal(address)
        return errno.ECONNREFUSED
    return err


def _finish_connect(sock: socket.socket, timeout: Optional[float]) -> Optional[int]:
    """Wait as the original blocking/timeout mode would have; return SO_ERROR or None."""
    ready: Sequence[Any]
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        ready = poller.poll(None if timeout is None else timeout * 1000.0)
    else:  # pragma: no cover - Linux has poll
        ready = select.select([], [sock], [], timeout)[1]
    if not ready:
        return None
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def _log_refusal(address: Any) -> None:
    target = os.environ.get(LOG_ENV_VAR)
    if not target:
        return
    line = f"{os.getpid()}\t{MACOS_UNIX_REFUSAL}\tECONNREFUSED\t{address!r}\n".encode()
    if target == "stderr":
        os.write(2, line)
        return
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one small O_APPEND write: lines from many processes never mix
    finally:
        os.close(fd)
