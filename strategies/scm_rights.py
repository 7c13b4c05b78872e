"""scm-rights: pre-forked workers that receive each accepted connection's fd over SCM_RIGHTS.

This is the correct version of what the article attempted. Each worker is joined to the parent
by an AF_UNIX socketpair made *before* it starts; the parent accepts, sends the fd with
`socket.send_fds` and closes its own copy at once, so the worker holds the only reference and
its close() really ends the connection (no lingering-reference hang).

Dispatch policy: least connections. Each worker writes one byte back on its channel whenever
one of its connections closes; the parent drains those bytes before each dispatch and picks
the worker with the fewest open connections. Round robin would be simpler, but keep-alive
connections live for very different times, and round robin would keep piling new ones onto a
worker that is already holding many; least-connections costs one non-blocking recv per worker
per accept. Inside a worker a selector reactor with a small thread pool serves the connections
(`harness/reactor.py`), so one slow connection does not block the others of that worker.
"""

from __future__ import annotations

import array
import select
import socket
from typing import List

from harness.server import log
from harness.server.app import App
from harness.server.reactor import Reactor
from harness.server.strategy import ServeOptions, Strategy, WorkerProcess

THREADS_PER_WORKER = 16
CHANNEL_TIMEOUT_S = 5.0
MAX_FDS_PER_MESSAGE = 16
WAKE_UP_S = 1.0  # the accept loop's select also wakes on the stop fd; this only bounds it


def send_fd(channel: socket.socket, fd: int) -> None:
    """Send one fd on the parent's non-blocking channel, waiting (bounded) if it is full."""
    if not select.select([], [channel], [], CHANNEL_TIMEOUT_S)[1]:
        raise TimeoutError("worker channel full for %gs" % CHANNEL_TIMEOUT_S)
    if hasattr(socket, "send_fds"):
        socket.send_fds(channel, [b"c"], [fd])
    else:  # Python 3.8: what send_fds does since 3.9
        channel.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def recv_fds(channel: socket.socket) -> List[int]:
    """The fds of one message. Ends the worker when the parent has closed the channel."""
    try:
        if hasattr(socket, "recv_fds"):
            data, fds, _flags, _addr = socket.recv_fds(channel, 64, MAX_FDS_PER_MESSAGE)
        else:  # pragma: no cover - Python 3.8
            fds_size = socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * array.array("i").itemsize)
            data, ancdata, _flags, _addr = channel.recvmsg(64, fds_size)
            fds = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
    except ConnectionResetError:
        data = b""  # the parent closed with our close-notifications unread: same as EOF
    if not data:
        raise SystemExit(0)  # the parent is stopping or gone
    return list(fds)


def worker_main(channel: socket.socket, app: App, options: ServeOptions) -> None:
    channel.settimeout(CHANNEL_TIMEOUT_S)

    def notify_closed() -> None:
        try:
            channel.send(b"x")
        except OSError:
            pass  # parent gone; recv will see EOF and end the worker

    def adopt() -> List[socket.socket]:
        return [socket.socket(fileno=fd) for fd in recv_fds(channel)]

    reactor = Reactor(app, THREADS_PER_WORKER, options.idle_timeout_s, options.io_timeout_s, on_closed=notify_closed)
    reactor.add_source(channel, adopt)
    try:
        reactor.run()
    finally:
        reactor.close()


def drain(workers: List[WorkerProcess]) -> int:
    """Count each worker's close notices off its load; the connections open in all workers."""
    for worker in workers:
        try:
            worker.load -= len(worker.channel.recv(4096, socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            pass
    return sum(worker.load for worker in workers)


class ScmRights(Strategy):
    name = "scm-rights"
    summary = "pre-forked workers; parent accepts and sends each fd over SCM_RIGHTS, least-connections dispatch"
    uses_multiprocessing = True
    default_workers = 2

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        workers = self.start_processes(options.workers, worker_main, (app, options), channel=True)
        for worker in workers:
            worker.channel.setblocking(False)  # closes are drained with a recv that must never wait
        listener.setblocking(False)
        logger = log.get()
        while workers and not self.stopping:
            if drain(workers) >= app.limits.max_connections:  # the cap: new clients wait in the backlog
                select.select([w.channel for w in workers] + [self.stop_fd], [], [], WAKE_UP_S)
                continue
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                select.select([listener.fileno(), self.stop_fd], [], [], WAKE_UP_S)
                continue
            worker = min(workers, key=lambda w: w.load)  # least connections
            try:
                send_fd(worker.channel, conn.fileno())
                worker.load += 1
            except OSError as error:
                logger.error("worker {} is gone ({}); {} left", worker.pid, error, len(workers) - 1)
                workers.remove(worker)
            finally:
                conn.close()  # the worker now holds the only reference
        if not workers:
            logger.error("every worker has died; stopping")
