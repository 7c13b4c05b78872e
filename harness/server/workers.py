"""Starting and stopping a strategy's worker processes, once for every strategy (see `base.py`).

Four shapes of worker, one set of rules:

- `start_processes`: N `multiprocessing` processes running a function, optionally each with an
  AF_UNIX channel to the parent (scm-rights);
- `make_pool` / `stop_pool`: a `multiprocessing.Pool` (the article's strategies);
- `stop_executor`: a `ProcessPoolExecutor` (asyncio-executor; made in `base.py`);
- `fork_child` / `reap` / `stop_pids`: a raw `os.fork()` child (fork-per-connection).

The rules: every worker runs `init_worker` first; under fork it closes the inherited fds it must
not hold (`inherited_fds`: the listener, the stop pipe, its siblings' channels) and the stop
signals stay blocked across fork until its handlers are reset; every stop is bounded (SIGTERM,
a grace period, SIGKILL), because a worker that died holding a pool lock or ignores SIGTERM
must not keep the server from exiting. Standard library only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Sequence, Set

from . import log
from .lifecycle import blocked_stop_signals
from .worker import init_worker

STOP_GRACE_S = 2.0  # how long workers get to exit by themselves, then again after SIGTERM
POOL_TERMINATE_TIMEOUT_S = 3.0
_POLL_S = 0.01


class WorkerProcess:
    """One started worker: its process, the parent's end of its channel, and a counter for the
    strategy's own bookkeeping (scm-rights counts open connections there)."""

    def __init__(self, process: Any, channel: Optional[socket.socket]) -> None:
        self.process = process
        self.channel_or_none = channel
        self.load = 0

    @property
    def channel(self) -> socket.socket:
        """The parent's end of the worker's channel (only for workers started with one)."""
        if self.channel_or_none is None:
            raise RuntimeError("worker %s was started without a channel" % self.pid)
        return self.channel_or_none

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid


def inherited_fds(start_method: str, fds: Iterable[Optional[int]]) -> List[int]:
    """The fds a forked worker must close; none for spawn/forkserver (they inherit nothing)."""
    if start_method != "fork":
        return []
    return sorted({fd for fd in fds if fd is not None and fd >= 0})


def _worker_entry(target: Callable[..., Any], args: Sequence[Any], close_fds: Sequence[int]) -> None:
    init_worker(close_fds)
    target(*args)


def start_processes(
    start_method: str,
    count: int,
    target: Callable[..., Any],
    args: Sequence[Any] = (),
    channel: bool = False,
    close_fds: Sequence[int] = (),
) -> List[WorkerProcess]:
    """Start `count` daemon processes running `target(*args)` (`target(channel, *args)` with a
    channel). `target` must be importable by name under spawn/forkserver."""
    context: Any = multiprocessing.get_context(start_method)
    fork = start_method == "fork"
    started: List[WorkerProcess] = []
    for _ in range(count):
        parent_end = child_end = None
        if channel:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        siblings = [w.channel.fileno() for w in started if w.channel_or_none is not None]
        own = [parent_end.fileno()] if parent_end is not None else []
        fds = inherited_fds(start_method, list(close_fds) + siblings + own)
        call_args = ((child_end,) if child_end is not None else ()) + tuple(args)
        process = context.Process(target=_worker_entry, args=(target, call_args, fds), daemon=True)
        with blocked_stop_signals(fork):
            process.start()
        if child_end is not None:
            child_end.close()  # the worker holds the only copy
        started.append(WorkerProcess(process, parent_end))
    return started


def stop_processes(workers: Sequence[WorkerProcess], grace_s: float = STOP_GRACE_S) -> None:
    """Close the channels (EOF asks a worker to stop), wait `grace_s`, SIGTERM, wait, SIGKILL."""
    for worker in workers:
        if worker.channel_or_none is not None:
            worker.channel_or_none.close()
    for action in (None, "terminate", "kill"):
        alive = [w.process for w in workers if w.process.is_alive()]
        if not alive:
            return
        for process in alive:
            if action is not None:
                getattr(process, action)()
        deadline = time.monotonic() + grace_s
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
    survivors = [w.pid for w in workers if w.process.is_alive()]
    if survivors:
        log.get().error("worker processes {} survived SIGKILL", survivors)


def child_pids() -> Set[int]:
    """The live multiprocessing children of this process (public API, no private attributes)."""
    return {p.pid for p in multiprocessing.active_children() if p.pid}


def make_pool(start_method: str, processes: int, close_fds: Sequence[int] = ()) -> Any:
    """`multiprocessing.Pool(processes)` with the start method set and `init_worker` as initializer."""
    context = multiprocessing.get_context(start_method)
    fds = inherited_fds(start_method, close_fds)
    # The pool's own threads are started here too, and keep the blocked mask: the process's
    # signals are then always delivered to the main thread, which is what Python expects.
    with blocked_stop_signals(start_method == "fork"):
        return context.Pool(processes=processes, initializer=init_worker, initargs=(fds,))


def stop_pool(pool: Any, timeout_s: float = POOL_TERMINATE_TIMEOUT_S, spare: Iterable[int] = ()) -> None:
    """`pool.terminate()`, but never for ever.

    A SIGTERM sent to the whole process group (systemd, `kill -- -PGID`) can kill a worker while
    it holds the pool's task-queue lock; `terminate()` then waits for that lock for ever
    (`Pool._help_stuff_finish`). Past the timeout every multiprocessing child of this process
    except `spare` (children that existed before the pool) is SIGKILLed, and the caller goes on
    without waiting for the stuck clean-up thread.
    """
    done = threading.Thread(target=lambda: (pool.terminate(), pool.join()), daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        log.get().warning("pool.terminate() is stuck (a worker died holding a pool lock); killing the workers")
        for pid in child_pids() - set(spare):
            _kill(pid, signal.SIGKILL)


def shutdown_executor(executor: Any) -> None:
    """`executor.shutdown` without waiting, dropping queued work (Python 3.9+ can)."""
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except TypeError:  # pragma: no cover - Python 3.8 has no cancel_futures
        executor.shutdown(wait=False)


def stop_executor(executor: Any, timeout_s: float = POOL_TERMINATE_TIMEOUT_S, spare: Iterable[int] = ()) -> None:
    """Shut a ProcessPoolExecutor down, bounded: queued work is dropped, running work may finish.

    `shutdown(wait=False)` would be quicker but on Python 3.8 it closes the wake-up pipe under
    the executor's management thread, which then never tells the workers to exit (and the
    interpreter's exit waits for them). So: wait, in a thread, and past the timeout SIGKILL every
    multiprocessing child of this process except `spare`."""

    def shutdown() -> None:
        try:
            executor.shutdown(wait=True, cancel_futures=True)
        except TypeError:  # pragma: no cover - Python 3.8 has no cancel_futures
            executor.shutdown(wait=True)

    done = threading.Thread(target=shutdown, daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        log.get().warning("the process pool did not shut down within {}s; killing its workers", timeout_s)
        for pid in child_pids() - set(spare):
            _kill(pid, signal.SIGKILL)


def log_task_failure(error: BaseException) -> None:
    """A pool `error_callback` that logs what a pool would otherwise drop silently."""
    log.get().warning("pool task failed: {}: {}", type(error).__name__, error)


def fork_child(target: Callable[..., Any], args: Sequence[Any], close_fds: Sequence[int]) -> int:
    """`os.fork()` a child that runs `init_worker`, then `target(*args)`, then `os._exit`.

    The stop signals are blocked across fork, so a stop can land neither between the fork and
    the caller's bookkeeping nor in the child before its handlers are reset. Raises OSError if
    fork fails (EAGAIN, ENOMEM)."""
    with blocked_stop_signals():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            status = 1
            try:
                init_worker(close_fds)
                target(*args)
                status = 0
            except BaseException:
                log.get().exception("forked child {} failed", os.getpid())
            finally:
                os._exit(status)  # never the parent's clean-up or atexit handlers
    return pid


def reap(pids: Set[int]) -> int:
    """Reap the finished children among `pids` (removed from it) without blocking; return how many
    are still alive. Only our own pids: `waitpid(-1)` could steal another child's status."""
    for pid in list(pids):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # already reaped elsewhere
        if done == pid:
            pids.discard(pid)
    return len(pids)


def stop_pids(pids: Set[int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the forked children in `pids`, wait up to `grace_s`, SIGKILL the rest, reap them all."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not reap(pids):
            return
        for pid in pids:
            _kill(pid, signum)
        deadline = time.monotonic() + grace_s
        while reap(pids) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
    if pids:
        log.get().error("children {} survived SIGKILL", sorted(pids))


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass
