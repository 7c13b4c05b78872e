"""The engine registry: one list of load engines, what each supports, and the run's hard bound.

Every place that needs an engine's name, its runner or whether it can pace requests at a rate
reads this list, so adding an engine is one entry here plus its module. The registry refers to
runners by module name and imports them only when a run starts: the threads engine need not
pay for uvloop, and `check()` can validate a workload without importing any engine.

`run_bound_s` is the single calculation of how long a legitimate run can last; the engines'
own hard limits and the multi-process driver's wait are built on it (with named slacks), so
they can never disagree about when a run has outlived every bound.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .workload import Workload

CLOSED = "closed"  # each connection sends its next request when the previous one ends
OPEN = "open"  # requests are sent at intended times, whatever the responses do
LOAD_MODELS = (CLOSED, OPEN)

REQUEST_SLACK_S = 0.1  # per request of a `requests=N` closed-loop run: one clock tick and more
ENGINE_SLACK_S = 1.0  # after the last possible deadline: the engine's final sweep and cleanup


@dataclass(frozen=True)
class Engine:
    name: str
    module: str  # relative to harness.load; the module has run(workload, progress, stop)
    models: tuple[str, ...]
    multi_process: bool  # may be spread over client processes (harness.load.procs)
    summary: str
    refusal: str = ""  # why it refuses the models it lacks, in one sentence

    def supports(self, model: str) -> bool:
        return model in self.models

    def runner(self) -> Any:
        """The engine module (imported now): call `.run(workload, progress, stop)`."""
        return importlib.import_module("." + self.module, __package__)


ENGINES: tuple[Engine, ...] = (
    Engine(
        "asyncio",
        "engine_asyncio",
        (CLOSED, OPEN),
        True,
        "callback-driven event loop (uvloop when importable); closed loop or open loop at a rate",
    ),
    Engine(
        "threads",
        "engine_threads",
        (CLOSED,),
        False,
        "the article's client: a thread pool of blocking sockets, closed loop only",
        refusal="the threads engine is the article's closed-loop client and cannot send at a fixed rate; "
        "use the asyncio engine for a rate",
    ),
)
ENGINE_NAMES = tuple(engine.name for engine in ENGINES)


def get(name: str) -> Engine:
    for engine in ENGINES:
        if engine.name == name:
            return engine
    raise KeyError(name)


def run_bound_s(workload: Workload) -> float:
    """Seconds from a run's start to the last instant a legitimate run can still be working:
    warm-up, the measurement (for `requests=N`, every request of a connection hanging in turn,
    or the open-loop schedule of N requests; a paced connection also waits for each slot), then
    one deadline for the last requests."""
    if workload.duration_s is not None:
        length = workload.duration_s
    elif workload.rate is not None and not workload.is_paced:
        length = (workload.requests or 0) / workload.share_rate()
    else:
        per_connection = math.ceil((workload.requests or 0) / workload.concurrency)
        pace = workload.pace_period_s() if workload.is_paced else 0.0  # a paced request waits for its slot too
        length = per_connection * (workload.deadline_s + REQUEST_SLACK_S + pace)
    return workload.warmup_s + length + workload.deadline_s


def hard_limit(workload: Workload, start: float, slack_s: float = ENGINE_SLACK_S) -> float:
    """The monotonic instant after which an engine (or the driver of several) gives up."""
    return start + run_bound_s(workload) + slack_s


__all__ = ["CLOSED", "ENGINES", "ENGINE_NAMES", "LOAD_MODELS", "OPEN", "Engine", "get", "hard_limit", "run_bound_s"]
