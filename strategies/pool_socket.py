"""pool-socket: the article's server, as written.

The main process accepts and hands the socket *object* to `multiprocessing.Pool.apply_async`.
Pickling it goes through `multiprocessing.reduction`: the parent dup()s the fd and a background
"resource sharer" thread passes it to the worker over AF_UNIX with SCM_RIGHTS. That works on
Linux. Two faults of the original are kept on purpose:

- the loop variable `clientsocket` keeps the parent's reference until the next accept()
  rebinds it, so the server's FIN waits for the next client: a client that reads until the
  server closes hangs (on every request with one client, on the last one with several);
- on macOS before CPython 3.13 (gh-101225) the resource sharer's backlog of 1 makes concurrent
  workers' connects fail with ECONNREFUSED while unpickling; the task is lost and the client
  waits for ever (`--emulate macos-unix-refusal` reproduces that on Linux).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
from typing import Any, Iterator, Tuple

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy
from harness.server.worker import init_worker


def start_request(app: App, clientsocket: socket.socket, addr: Tuple[Any, ...], idle_timeout_s: float) -> None:
    """Runs in a pool worker: serve the connection, then close the worker's copy."""
    serve_blocking(clientsocket, app, idle_timeout_s)


def report_failure(error: BaseException) -> None:
    """Observation only: the article passes no error_callback, so failures vanish silently."""
    log.get().warning("pool task failed: {}: {}", type(error).__name__, error)


TERMINATE_TIMEOUT_S = 3.0


@contextlib.contextmanager
def article_pool(options: ServeOptions) -> Iterator[Any]:
    """`multiprocessing.Pool(16)` as in the article, with the start method set explicitly."""
    pool = multiprocessing.get_context(options.start_method).Pool(processes=options.workers, initializer=init_worker)
    try:
        yield pool
    finally:
        terminate_bounded(pool)


def terminate_bounded(pool: Any) -> None:
    """`pool.terminate()`, but never for ever.

    A SIGTERM sent to the whole process group (systemd, `kill -- -PGID`) can kill a worker
    while it holds the pool's task-queue lock; `terminate()` then waits for that lock for
    ever (`Pool._help_stuff_finish`). Past the timeout the workers are SIGKILLed and the
    server exits without waiting for the stuck clean-up thread.
    """
    import os
    import signal
    import threading

    workers = [p.pid for p in getattr(pool, "_pool", []) if p.pid]
    done = threading.Thread(target=lambda: (pool.terminate(), pool.join()), daemon=True)
    done.start()
    done.join(TERMINATE_TIMEOUT_S)
    if done.is_alive():
        log.get().warning("pool.terminate() is stuck (a worker died holding a pool lock); killing the workers")
        for pid in workers + [p.pid for p in getattr(pool, "_pool", []) if p.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class PoolSocket(Strategy):
    name = "pool-socket"
    summary = (
        "multiprocessing.Pool; main process accepts and passes the socket object via apply_async (the article's server)"
    )
    broken = (
        "keeps each accepted socket until the next accept(), so a read-until-close client waits for the next "
        "client; on macOS < 3.13 workers lose tasks under concurrency (gh-101225)"
    )
    uses_multiprocessing = True
    default_workers = 16

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        logger = log.get()
        with article_pool(options) as pool:
            while True:
                try:
                    clientsocket, addr = listener.accept()
                    pool.apply_async(
                        start_request, (app, clientsocket, addr, options.idle_timeout_s), error_callback=report_failure
                    )
                except Exception as error:  # as in the article: log and keep accepting
                    logger.exception(error)
