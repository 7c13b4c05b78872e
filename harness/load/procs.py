"""Spread the asyncio engine over several client processes and merge their results exactly.

One Python process tops out at one core; when the server is faster than that, the client must
use more. Each child runs `engine_asyncio.run` on its share of the connections (and of
`requests`), and sends back its LoadResult as a dict; the parent adds them with
`metrics.merge` (histograms bucket by bucket, so percentiles are as if one process had seen
every request).

Why it is shaped so:
- `spawn` start method: the orchestrator has threads, and forking a threaded process is unsafe.
- A shared start instant: children report `ready` after their (slow) imports; the parent then
  sets one time.monotonic() instant (system-wide on Linux and macOS) so that every child's
  warm-up and measurement windows coincide and the merged `elapsed_s` means one window.
- Children ignore SIGINT: a Ctrl-C reaches the whole process group, but only the parent
  decides; it sets a shared stop event and the children return partial results.
- Every wait has a timeout; a child that does not report in time is terminated, then killed,
  and the result is marked partial.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import engines
from .metrics import LatencyHistogram, LoadResult, merge, zero_counts
from .net import resolve
from .schedule import MEASURE, WARMUP, Progress
from .workload import Workload

ProgressFn = Callable[[Progress], None]
READY_TIMEOUT_S = 60.0  # spawn + imports, on a busy two-core machine with many children
START_DELAY_S = 0.05
STOP_GRACE_S = 5.0  # after a stop: children need a tick plus their cleanup
FINISH_GRACE_S = 5.0  # beyond the engines' own hard limit: a child's result crossing the pipe
POLL_S = 0.2
PROGRESS_INTERVAL_S = 1.0


class ClientProcessError(RuntimeError):
    """A client process failed: a harness bug, not a server finding."""


def run(workload: Workload, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> LoadResult:
    resolve(workload.host, workload.port)  # a bad host is one sentence here, not N child errors
    ctx = multiprocessing.get_context("spawn")
    shares = workload.share(workload.client_procs)
    messages = ctx.Queue()
    go, child_stop = ctx.Event(), ctx.Event()
    start_at = ctx.Value("d", 0.0, lock=False)
    children = [
        ctx.Process(
            target=_child,
            args=(i, share, messages, go, start_at, child_stop),
            name="hangbench-client-%d" % i,
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    try:
        for child in children:
            child.start()
        collector = _Collector(len(children), messages, progress)
        if not collector.wait_ready(stop):
            return _empty(workload)
        start_at.value = time.monotonic() + START_DELAY_S
        go.set()
        results = collector.wait_results(
            engines.hard_limit(workload, start_at.value, engines.ENGINE_SLACK_S + FINISH_GRACE_S), stop, child_stop
        )
    finally:
        child_stop.set()
        go.set()  # children still waiting to start see the stop and return at once
        _reap(children)
        messages.close()
    stopped = stop is not None and stop.is_set()
    if not results:
        return _empty(workload)
    merged = merge(results)
    missing = len(results) < len(children)
    return replace(merged, partial=merged.partial or missing or stopped, client_procs=len(children))


def _empty(workload: Workload) -> LoadResult:
    return LoadResult.build(
        zero_counts(), LatencyHistogram(), 0.0, 0.0, engine="asyncio", client_procs=workload.client_procs, partial=True
    )


class _Collector:
    """Reads the children's messages: ready, progress, result, error."""

    def __init__(self, count: int, messages: Any, progress: ProgressFn | None) -> None:
        self.count = count
        self.messages = messages
        self.progress = progress
        self.ready: set[int] = set()
        self.latest: dict[int, Progress] = {}
        self.results: dict[int, LoadResult] = {}
        self.next_progress = time.monotonic() + PROGRESS_INTERVAL_S

    def wait_ready(self, stop: threading.Event | None) -> bool:
        limit = time.monotonic() + READY_TIMEOUT_S
        while len(self.ready) < self.count and time.monotonic() < limit:
            if stop is not None and stop.is_set():
                return False
            self.poll()
        if len(self.ready) < self.count:
            raise ClientProcessError(
                "%d of %d client processes did not start within %gs"
                % (self.count - len(self.ready), self.count, READY_TIMEOUT_S)
            )
        return True

    def wait_results(self, limit: float, stop: threading.Event | None, child_stop: Any) -> list[LoadResult]:
        while len(self.results) < self.count and time.monotonic() < limit:
            if stop is not None and stop.is_set() and not child_stop.is_set():
                child_stop.set()
                limit = min(limit, time.monotonic() + STOP_GRACE_S)
            self.poll()
            self.report()
        return [self.results[i] for i in sorted(self.results)]

    def poll(self) -> None:
        try:
            kind, index, payload = self.messages.get(timeout=POLL_S)
        except queue_module.Empty:
            return
        if kind == "ready":
            self.ready.add(index)
        elif kind == "progress":
            self.latest[index] = payload
        elif kind == "result":
            self.results[index] = LoadResult.from_dict(payload)
        elif kind == "error":
            raise ClientProcessError("client process %d failed: %s" % (index, payload))

    def report(self) -> None:
        now = time.monotonic()
        if self.progress is None or now < self.next_progress or not self.latest:
            return
        self.next_progress = now + PROGRESS_INTERVAL_S
        snapshots = list(self.latest.values())
        phase = MEASURE if all(p.phase == MEASURE for p in snapshots) else WARMUP
        counts = zero_counts()
        for snapshot in snapshots:
            if snapshot.phase == phase:
                for kind, value in snapshot.counts.items():
                    counts[kind] += value
        elapsed = max(p.elapsed_s for p in snapshots if p.phase == phase)
        self.progress(Progress(phase, elapsed, counts))


def _reap(children: list[Any]) -> None:
    """Join every child; terminate, then kill, the ones that do not exit in time."""
    for child in children:
        if child.pid is not None:
            child.join(timeout=2.0)
    for child in children:
        if child.is_alive():
            child.terminate()
            child.join(timeout=1.0)
        if child.is_alive():
            child.kill()
            child.join(timeout=1.0)


def _child(index: int, workload: Workload, messages: Any, go: Any, start_at: Any, stop: Any) -> None:
    """Entry point of a client process (importable, as `spawn` requires)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from . import engine_asyncio

        messages.put(("ready", index, None))
        if not go.wait(READY_TIMEOUT_S + START_DELAY_S + 5.0) or stop.is_set():
            return
        result = engine_asyncio.run(
            workload,
            progress=lambda snapshot: messages.put(("progress", index, snapshot)),
            stop=stop,
            start_at=start_at.value,
        )
        messages.put(("result", index, result.to_dict()))
    except BaseException as error:
        messages.put(("error", index, "%s: %s" % (type(error).__name__, error)))
