"""fork-per-connection: an example hangbench strategy plugin, the classic Unix server.

The main process accepts; for each connection it `os.fork()`s a child that serves that one
connection with `harness.server.connection.serve_blocking` and leaves with `os._exit` (never running
the parent's clean-up or atexit handlers). The parent closes its copy of the connection at once,
so the child holds the only reference and its close really ends the connection (no lingering
reference, unlike the article's pool server).

What the parent must get right, and how:

- Reaping: finished children are reaped with non-blocking `waitpid` on the pids it forked (never
  `waitpid(-1)`, which could steal another child's status), once per accept poll, so zombies
  live at most about ACCEPT_POLL_S.
- Stopping: the server process raises `ServerStop` in the main thread on SIGTERM. The signals
  are blocked around `fork()`, so the stop can never land between fork and the bookkeeping (a
  child nobody knows about) nor in the child before it has reset its handlers (a child running
  the parent's clean-up). On stop the parent SIGTERMs its live children, waits a bounded grace
  period, SIGKILLs the rest and reaps them all.
- Bounds: `--workers` caps the live children; at the cap the parent stops accepting for a
  moment and new connections wait in the listen backlog.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Set

from harness.server import log
from harness.server.app import App
from harness.server.connection import serve_blocking
from harness.server.strategy import ServeOptions, Strategy
from harness.server.worker import init_worker

ACCEPT_POLL_S = 0.2  # how often the parent wakes up to reap when no client arrives
FULL_WAIT_S = 0.01  # pause while at the cap of live children
STOP_GRACE_S = 2.0  # how long children get to exit on SIGTERM before SIGKILL
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

__all__ = ["ForkPerConnection"]


class ForkPerConnection(Strategy):
    name = "fork-per-connection"
    summary = "main process accepts and os.fork()s one child per connection (example plugin)"
    default_workers = 256  # here: the most children alive at once

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        children: Set[int] = set()
        listener.settimeout(ACCEPT_POLL_S)
        try:
            while True:
                reap(children)
                if len(children) >= options.workers:
                    time.sleep(FULL_WAIT_S)
                    continue
                try:
                    conn, _addr = listener.accept()
                except socket.timeout:
                    continue
                except OSError as error:  # ECONNABORTED, EMFILE: try again at the next poll
                    log.get().warning("accept failed: {}", error)
                    time.sleep(FULL_WAIT_S)
                    continue
                fork_child(conn, listener, app, options, children)
        finally:
            stop_children(children)


def fork_child(
    conn: socket.socket, listener: socket.socket, app: App, options: ServeOptions, children: Set[int]
) -> None:
    """Fork a child to serve `conn`; record its pid; close the parent's copy of `conn`."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            child_main(conn, listener, app, options, old_mask)  # never returns
        children.add(pid)
    except OSError as error:  # EAGAIN/ENOMEM: drop this connection, keep serving
        log.get().error("fork failed: {}", error)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        conn.close()


def child_main(
    conn: socket.socket, listener: socket.socket, app: App, options: ServeOptions, old_mask: Set[int]
) -> None:
    """In the child: drop the listener, die on SIGTERM like any worker, serve, _exit."""
    status = 1
    try:
        listener.close()
        init_worker()  # SIGTERM -> default (die), SIGINT ignored: never raise ServerStop here
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        serve_blocking(conn, app, options.idle_timeout_s)
        status = 0
    finally:
        os._exit(status)


def reap(children: Set[int]) -> int:
    """Reap the finished children among `children` without blocking; return how many."""
    reaped = 0
    for pid in list(children):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # already reaped elsewhere
        if done == pid:
            children.discard(pid)
            reaped += 1
    return reaped


def stop_children(children: Set[int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the live children, wait up to `grace_s`, SIGKILL the rest, reap them all."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        reap(children)
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while children and time.monotonic() < deadline:
            time.sleep(0.01)
            reap(children)
    if children:
        log.get().error("children {} survived SIGKILL", sorted(children))
