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

import socket
from typing import Any, Tuple

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy
from harness.server.workers import log_task_failure


def start_request(app: App, clientsocket: socket.socket, addr: Tuple[Any, ...], idle_timeout_s: float) -> None:
    """Runs in a pool worker: serve the connection, then close the worker's copy."""
    serve_blocking(clientsocket, app, idle_timeout_s)


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
    interrupt_on_stop = True  # the article's blocking `while True: accept()` never looks at a stop flag

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        logger = log.get()
        with self.pool() as pool:  # the article's `multiprocessing.Pool(16)`, start method set explicitly
            while True:
                try:
                    clientsocket, addr = listener.accept()
                    pool.apply_async(  # error_callback: observation only, the article has none
                        start_request,
                        (app, clientsocket, addr, options.idle_timeout_s),
                        error_callback=log_task_failure,
                    )
                except Exception as error:  # as in the article: log and keep accepting
                    logger.exception(error)
