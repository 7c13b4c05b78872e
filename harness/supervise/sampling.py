"""Resource sampling of a server tree: CPU so far, memory now and at its peak, in a thread.

Memory is PSS where the kernel gives it (see `procscan`): the sum of RSS counts a page shared by
N forked copies N times, so a pre-fork server looked N times its size. A PSS sample is not free
-- the kernel walks each process's page tables, ~2 ms per 20 MB process -- so the pause between
samples (0.1 s by default) stretches to keep the sampler under a tenth of a core, and the
largest gap between two samples is kept: a peak shorter than that may have been missed.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from loguru import logger

from .proctree import ProcessTree
from .reports import ResourceSample

SAMPLE_INTERVAL_S = 0.1
_SAMPLER_CPU_SHARE = 10  # the sampler may use at most 1/10 of a core


class Sampler:
    """Samples `tree` on demand (`sample()`) and, once started, in a daemon thread."""

    def __init__(self, tree: Optional[ProcessTree], started_at: float, interval_s: float, name: str) -> None:
        self._tree = tree
        self._started_at = started_at
        self._interval_s = interval_s
        self._name = name
        self._peak_rss = 0
        self._peak_mem = 0
        self._max_gap = 0.0
        self._last: Optional[ResourceSample] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def last(self) -> Optional[ResourceSample]:
        with self._lock:
            return self._last

    @property
    def effective_interval_s(self) -> float:
        """The largest gap between two background samples (at least the configured interval)."""
        return round(max(self._interval_s, self._max_gap), 3)

    def sample(self) -> ResourceSample:
        """Measure the tree now: CPU so far, memory now and at its peak."""
        if self._tree is None:
            return ResourceSample(0.0, 0.0, 0, 0, 0)
        usage = self._tree.usage()
        with self._lock:
            self._peak_rss = max(self._peak_rss, usage.rss_bytes)
            self._peak_mem = max(self._peak_mem, usage.mem_bytes)
            self._last = ResourceSample(
                time.monotonic() - self._started_at,
                usage.cpu_s,
                usage.rss_bytes,
                self._peak_rss,
                usage.n_processes,
                usage.mem_bytes,
                self._peak_mem,
                usage.mem_kind,
            )
            return self._last

    def safe_sample(self, fallback: Optional[ResourceSample]) -> Optional[ResourceSample]:
        """`sample()`, or `fallback` if the tree cannot be measured (never raises)."""
        if self._tree is None:
            return fallback
        try:
            return self.sample()
        except Exception as error:
            logger.warning("resource sample of server {} failed: {}", self._name, error)
            return fallback

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hangbench-sampler-%s" % self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the sampler is stopped (the tree is being stopped)."""
        self._stop.wait(seconds)

    def _run(self) -> None:
        """Sample until stopped or the tree is empty."""
        warned = False
        last = time.monotonic()
        sample: Callable[[], ResourceSample] = self.sample
        while not self._stop.is_set():
            cost = time.thread_time()
            try:
                if sample().n_processes == 0:
                    return
            except Exception as error:
                if not warned:
                    logger.warning("resource sampling of server {} failed: {}", self._name, error)
                    warned = True
            cost = time.thread_time() - cost
            self._stop.wait(max(self._interval_s, cost * _SAMPLER_CPU_SHARE))
            now = time.monotonic()
            self._max_gap = max(self._max_gap, now - last)
            last = now
