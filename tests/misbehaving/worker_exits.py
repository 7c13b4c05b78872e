"""Misbehaves by losing a worker mid-request: a process pool whose workers `_exit` after reading
every DIE_EVERY-th request, before answering it.

The parent accepts, hands the socket to `multiprocessing.Pool.apply_async` (as pool-socket does)
and keeps its own copy until the task's callback or error callback closes it -- a careful design
for a pool that never loses a task. But the pool does lose the task of a worker that dies: it
starts a replacement and calls neither callback, so the parent holds the connection for ever and
its client waits (the request read, not one byte back).

Expected: hangs; cause `worker-died` (a process of the tree exited during the run; a connection
whose request was read got no byte back, held by the idle parent alone).
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import IO_TIMEOUT_S, MAX_READS_PER_CONNECTION, accepted

from harness.server.app import handle
from harness.server.protocol import ProtocolError, RequestParser, render
from harness.server.strategy import Strategy

DIE_EVERY = 5  # requests a worker reads; the DIE_EVERY-th kills it before it answers
MAX_HELD = 10_000  # the parent's copies, bounded

_requests_read = [0]  # per worker process


def serve_connection(conn, app):
    """In a pool worker: answer the connection's requests, or die after reading one."""
    conn.settimeout(IO_TIMEOUT_S)
    parser = RequestParser()
    try:
        for _ in range(MAX_READS_PER_CONNECTION):
            data = conn.recv(65536)
            if not data:
                return
            for event in parser.feed(data):
                if isinstance(event, ProtocolError):
                    conn.sendall(render(event.response(), None, False))
                    return
                _requests_read[0] += 1
                if _requests_read[0] % DIE_EVERY == 0:
                    os._exit(1)  # mid-request: read, not answered
                conn.sendall(render(handle(app, event), event, event.keep_alive))
                if not event.keep_alive:
                    return
    except OSError:
        pass
    finally:
        conn.close()


class WorkerExits(Strategy):
    name = "mis-worker-exits"
    summary = "process pool whose workers _exit mid-request; the parent holds each socket until its callback"
    broken = "a worker exits after reading every 5th request; its task is lost and the parent keeps the connection"
    uses_multiprocessing = True
    default_workers = 4
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it

    def serve(self, listener, app, options):
        held: dict = {}  # task index -> the parent's copy of its socket
        lock = threading.Lock()

        def release(key):
            def done(_result):
                with lock:
                    conn = held.pop(key, None)
                if conn is not None:
                    conn.close()

            return done

        with self.pool() as pool:
            for index, conn in enumerate(accepted(listener)):
                with lock:
                    if len(held) < MAX_HELD:
                        held[index] = conn
                pool.apply_async(serve_connection, (conn, app), callback=release(index), error_callback=release(index))
