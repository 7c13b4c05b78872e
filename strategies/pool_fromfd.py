"""pool-fromfd: the article's proposed "fix", as written.

The main process passes `clientsocket.fileno()` (an int) to the pool; the worker calls
`socket.fromfd(fd, AF_INET, SOCK_STREAM)`, `os.close(fd)`, serves and closes. It cannot work:
the pool workers were created before accept(), so that fd number is not open in the worker
(EBADF) or, under fork, names another of the worker's files (for instance the pipe
multiprocessing uses to watch its parent), and `socket()` on it fails (ENOTSOCK) after
`fromfd` has already dup()ed it, leaking the dup. The failure comes back through the pool, not
to the client: the parent drops its unread socket at the next accept() and the client sees a
reset, or nothing at all until its own timeout.

The only additions to the article's code are observations: an error_callback that logs what
the article would silently drop, and a log line naming what the fd number really is in the
worker (from /proc/self/fd), which is what `docs/why-it-hangs.md` cites.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Tuple

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy
from harness.server.workers import log_task_failure


def describe_fd(fd: int) -> str:
    """What `fd` names in this process, from /proc (Linux), for the log."""
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except FileNotFoundError:
        return "nothing (not open here)"
    except OSError as error:
        return "unknown (%s)" % error.strerror


def start_request(clientsocket_fd: int, addr: Tuple[Any, ...], app: App, idle_timeout_s: float) -> None:
    try:
        clientsocket = socket.fromfd(clientsocket_fd, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as error:
        log.get().warning(
            "worker {}: fd {} from the parent names {} here: {}",
            os.getpid(),
            clientsocket_fd,
            describe_fd(clientsocket_fd),
            error,
        )
        raise
    os.close(clientsocket_fd)  # "close the original fd to avoid a leak", as the article says
    try:
        serve_blocking(clientsocket, app, idle_timeout_s)
    except Exception as error:
        log.get().exception(error)
    finally:
        clientsocket.close()


class PoolFromFd(Strategy):
    name = "pool-fromfd"
    summary = "the article's fix: pass fileno() to the pool; socket.fromfd + os.close in the worker"
    broken = "the fd number means nothing in a pool worker started before accept(): EBADF or ENOTSOCK, no response ever"
    uses_multiprocessing = True
    default_workers = 16
    interrupt_on_stop = True  # the article's blocking `while True: accept()` never looks at a stop flag

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        logger = log.get()
        with self.pool() as pool:  # the article's `multiprocessing.Pool(16)`
            while True:
                try:
                    clientsocket, addr = listener.accept()
                    clientsocket_fd = clientsocket.fileno()
                    pool.apply_async(
                        start_request,
                        (clientsocket_fd, addr, app, options.idle_timeout_s),
                        error_callback=log_task_failure,
                    )
                except Exception as error:  # as in the article
                    logger.exception(error)
