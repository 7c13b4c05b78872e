"""The public face of the strategy contract: what plugins and the harness import.

A strategy is one small class: a name, a one-line summary, an optional `broken` reason, and
`serve(listener, app, options)`; it inherits its lifecycle (stop flag and wake-up fd, worker
start and stop) from `Strategy`. The pieces live in modules with one job each, re-exported
here so that `from harness.server.strategy import Strategy` stays the one import a plugin needs:

- `base.py`: the Strategy base class, its options and its definition-time checks;
- `lifecycle.py`: the stop flag, its wake-up fd and the server's signal handlers;
- `workers.py` / `worker.py`: starting and stopping worker processes;
- `registry.py`: built-ins, entry points, plugin files, and name resolution.

Server-side module: standard library only, importable from Python 3.8 up.
"""

from __future__ import annotations

from .base import (
    MAX_WORKERS,
    START_METHODS,
    ServeOptions,
    Strategy,
    StrategyDefinitionError,
    StrategyError,
    StrategyOption,
)
from .lifecycle import ServerStop, StopEvent
from .registry import BUILTINS, ENTRY_POINT_GROUP, Entry, discover, load_spec, resolve
from .workers import WorkerProcess

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "MAX_WORKERS",
    "START_METHODS",
    "Entry",
    "ServeOptions",
    "ServerStop",
    "StopEvent",
    "Strategy",
    "StrategyDefinitionError",
    "StrategyError",
    "StrategyOption",
    "WorkerProcess",
    "discover",
    "load_spec",
    "resolve",
]
