"""Experiments behind `--emulate macos-unix-refusal`: measure the kernel facts, reproduce gh-101225.

Two sub-commands, each printing JSON lines:

- `probe`: how many AF_UNIX connections queue on a listener that never accepts, per listen
  backlog, and which errno stops the next connect (with `--emulate`, under the emulation);
- `reproduce`: the article's pattern at the multiprocessing level, without the rest of
  hangbench: sockets passed to `Pool.apply_async` in waves, counting completed, lost and
  refused tasks (CPython gh-101225).

Separate from `emulate.py` because that module is the runtime patch, loaded into every server
process (and by file path into fresh interpreters); these experiments are run by hand. Like it,
this file runs by file path under any interpreter from 3.8 up, where the `harness` package may
not be importable: `$PY/3.12.1/bin/python harness/server/emulate_lab.py reproduce --method fork`.
It then loads `emulate.py` from beside itself, under the module name the start-up hook uses, so
that there is one copy of the patch's state. Standard library only.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import socket
import sys
import tempfile
import threading
import time
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple

_FILE_MODULE = "_hangbench_emulate"  # the name _emulate_site/sitecustomize.py loads emulate.py under


def _load_emulate() -> ModuleType:
    if __package__:
        from . import emulate as package_module

        return package_module
    loaded = sys.modules.get(_FILE_MODULE)
    if loaded is not None:
        return loaded
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulate.py")
    spec = importlib.util.spec_from_file_location(_FILE_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_FILE_MODULE] = module
    spec.loader.exec_module(module)
    return module


emulate = _load_emulate()


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
    return list(emulate.active())


def reproduce(
    method: str,
    tasks: int = 64,
    concurrency: int = 8,
    processes: int = 4,
    emulated: bool = True,
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
        os.environ[emulate.LOG_ENV_VAR] = log
        if emulated:
            emulate.apply([emulate.MACOS_UNIX_REFUSAL])
        pool = multiprocessing.get_context(method).Pool(processes)
        try:
            # Workers up before the first wave; bounded like every other wait here.
            states = pool.map_async(_worker_active, range(processes * 4)).get(60.0)
            results = _run_waves(pool, tasks, concurrency, grace)
        finally:
            _stop_pool(pool)
        refusals = _count_lines(log)
    summary = _summary(method, tasks, concurrency, processes, emulated, results, refusals, started)
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
    parser = argparse.ArgumentParser(prog="python harness/server/emulate_lab.py", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", help="count AF_UNIX connections queued per listen backlog")
    probe.add_argument("--backlog", type=int, nargs="+", default=[-1, 0, 1, 2, 5, 128])
    probe.add_argument("--emulate", action="store_true", help=f"with {emulate.MACOS_UNIX_REFUSAL}")
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
            emulate.apply([emulate.MACOS_UNIX_REFUSAL])
        for backlog in args.backlog:
            queued, stopped_by = probe_queue_limit(backlog)
            print(json.dumps({"backlog": backlog, "queued": queued, "next": stopped_by}))
        return 0
    summary = reproduce(args.method, args.tasks, args.concurrency, args.processes, args.emulate, args.grace)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
