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

The kernel facts this relies on (measured here with `python harness/emulate.py probe`, Linux
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

Standard library only; runs on Python 3.8 and later. `python harness/emulate.py reproduce --help`
runs the gh-101225 scenario at the multiprocessing level, without the rest of hangbench.
"""

from __future__ import annotations

import _socket
import argparse
import errno
import json
import os
import select
import socket
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

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
    return os.pathsep.join([SITE_DIR] + parts)


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
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _make_connect_ex(previous["connect_ex"])  # type: ignore
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
        err = connect_ex(sock, address)
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


# --- probe: the kernel facts above, measured -------------------------------------------------


def probe_queue_limit(backlog: int, limit: int = 300) -> Tuple[int, str]:
    """Connect non-blocking to a never-accepting AF_UNIX listener until refused.

    Returns (connections that queued, name of the errno that stopped the next one).
    """
    with tempfile.TemporaryDirectory(prefix="hangbench-probe-") as tmp:
        path = os.path.join(tmp, "listener")
        clients: List[socket.socket] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(backlog)
            try:
                return _fill_queue(path, clients, limit)
            finally:
                for client in clients:
                    client.close()


def _fill_queue(path: str, clients: List[socket.socket], limit: int) -> Tuple[int, str]:
    for queued in range(limit):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        clients.append(client)
        client.setblocking(False)
        try:
            client.connect(path)
        except OSError as exc:
            return queued, errno.errorcode.get(exc.errno or 0, str(exc))
    return limit, "none"


# --- reproduce: gh-101225 at the multiprocessing level ---------------------------------------


def _serve_one(sock: socket.socket) -> int:
    """Pool task: answer on the socket the parent passed, as the article's handler does."""
    with sock:
        sock.sendall(b"ok")
    return os.getpid()


def _worker_active(_: object = None) -> List[str]:
    """Pool task: the emulations installed in this worker."""
    return active()


def reproduce(
    method: str,
    tasks: int = 64,
    concurrency: int = 8,
    processes: int = 4,
    emulate: bool = True,
    grace: float = 3.0,
) -> Dict[str, Any]:
    """Pass `tasks` sockets to a Pool(`processes`) in waves of `concurrency` apply_async calls.

    A wave ends when all its tasks are done or none finished for `grace` seconds. A task is
    lost if it has not completed by the end. `refusals` counts the emulated ECONNREFUSEDs in
    all processes (through HANGBENCH_EMULATE_LOG); each one kills a worker and loses its task.
    """
    import multiprocessing

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hangbench-reproduce-") as tmp:
        log = os.path.join(tmp, "refusals.log")
        os.environ[LOG_ENV_VAR] = log
        if emulate:
            apply([MACOS_UNIX_REFUSAL])
        pool = multiprocessing.get_context(method).Pool(processes)
        try:
            # Workers up before the first wave; bounded like every other wait here.
            states = pool.map_async(_worker_active, range(processes * 4)).get(60.0)
            results = _run_waves(pool, tasks, concurrency, grace)
        finally:
            _stop_pool(pool)
        refusals = _count_lines(log)
    summary = _summary(method, tasks, concurrency, processes, emulate, results, refusals, started)
    summary["worker_emulation"] = sorted({name for state in states for name in state})
    return summary


def _run_waves(pool: Any, tasks: int, concurrency: int, grace: float) -> List[Any]:
    results: List[Any] = []
    keep: List[socket.socket] = []  # the parent's ends, and its copies until the wave is done
    for first in range(0, tasks, concurrency):
        wave = []
        for _ in range(min(concurrency, tasks - first)):
            ours, theirs = socket.socketpair()
            keep += [ours, theirs]
            wave.append(pool.apply_async(_serve_one, (theirs,)))
        _wait_wave(wave, grace)
        results += wave
    _wait_wave(results, grace)  # stragglers from any wave still count as completed
    for sock in keep:
        sock.close()
    return results


def _wait_wave(wave: List[Any], grace: float) -> None:
    last_progress = time.monotonic()
    done = 0
    deadline = last_progress + grace * (len(wave) + 1)  # hard cap, whatever happens
    while time.monotonic() < deadline:
        now_done = sum(1 for r in wave if r.ready())
        if now_done == len(wave):
            return
        if now_done > done:
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > grace:
            return
        time.sleep(0.02)


def _stop_pool(pool: Any) -> None:
    # close()+join() would wait for ever for the lost tasks; terminate() does not.
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(30.0)


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _summary(
    method: str,
    tasks: int,
    concurrency: int,
    processes: int,
    emulate: bool,
    results: List[Any],
    refusals: int,
    started: float,
) -> Dict[str, Any]:
    completed = sum(1 for r in results if r.ready() and r.successful())
    errors = sum(1 for r in results if r.ready() and not r.successful())
    lost = len(results) - completed - errors
    return {
        "python": sys.version.split()[0],
        "method": method,
        "emulate": emulate,
        "tasks": tasks,
        "concurrency": concurrency,
        "processes": processes,
        "completed": completed,
        "errors": errors,
        "lost": lost,
        "refusals": refusals,
        # Lost without a refusal: e.g. a fork-started replacement worker deadlocked on an
        # import lock it inherited, which also stalls the parent's resource-sharer thread.
        "stuck": max(0, lost - refusals),
        "seconds": round(time.monotonic() - started, 2),
    }


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python harness/emulate.py", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", help="count AF_UNIX connections queued per listen backlog")
    probe.add_argument("--backlog", type=int, nargs="+", default=[-1, 0, 1, 2, 5, 128])
    probe.add_argument("--emulate", action="store_true", help=f"with {MACOS_UNIX_REFUSAL}")
    rep = sub.add_parser("reproduce", help="gh-101225 at the multiprocessing level; prints JSON")
    rep.add_argument("--method", choices=("fork", "spawn", "forkserver"), required=True)
    rep.add_argument("--tasks", type=int, default=64)
    rep.add_argument("--concurrency", type=int, default=8)
    rep.add_argument("--processes", type=int, default=4)
    rep.add_argument("--grace", type=float, default=3.0)
    rep.add_argument("--no-emulate", dest="emulate", action="store_false")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "probe":
        if args.emulate:
            apply([MACOS_UNIX_REFUSAL])
        for backlog in args.backlog:
            queued, stopped_by = probe_queue_limit(backlog)
            print(json.dumps({"backlog": backlog, "queued": queued, "next": stopped_by}))
        return 0
    summary = reproduce(args.method, args.tasks, args.concurrency, args.processes, args.emulate, args.grace)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
