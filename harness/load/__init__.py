"""Load generators: drive a server with a `Workload` and return a `LoadResult`.

`run_load` is the one entry point the orchestrator needs. It picks the engine:
- `asyncio` (default): callback-driven event loop, uvloop when importable; the fast client,
  optionally spread over `client_procs` processes whose results merge exactly;
- `threads`: the article's client, a ThreadPoolExecutor of blocking sockets.

It blocks for warm-up + duration (+ at most the deadline to let in-flight requests end), is
bounded in time whatever the server does, and returns early with `partial=True` when `stop`
is set. `progress`, if given, receives a `Progress` about once a second, from the calling
thread (asyncio engine, several processes) or from a thread this package owns (threads engine).

Client-side package: it imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ..metrics import LoadResult
from .schedule import Progress
from .workload import Workload

__all__ = ["Workload", "Progress", "LoadResult", "run_load"]


def run_load(
    workload: Workload,
    progress: Optional[Callable[[Progress], None]] = None,
    stop: Optional[threading.Event] = None,
) -> LoadResult:
    """Run `workload` against its server and return what was measured.

    Raises ValueError (one sentence) for an impossible workload, before any socket is opened.
    """
    workload.check()
    if workload.engine == "threads":
        from . import engine_threads

        return engine_threads.run(workload, progress, stop)
    if workload.client_procs > 1:
        from . import procs

        return procs.run(workload, progress, stop)
    from . import engine_asyncio

    return engine_asyncio.run(workload, progress, stop)
