"""Load generators: drive a server with a `Workload` and return a `LoadResult`.

`run_load` is the one entry point the orchestrator needs. It picks the engine:
- `asyncio` (default): callback-driven event loop, uvloop when importable; the fast client,
  optionally spread over `client_procs` processes whose results merge exactly;
- `threads`: the article's client, a ThreadPoolExecutor of blocking sockets.

It blocks for warm-up + duration (+ at most the deadline to let in-flight requests end), is
bounded in time whatever the server does, and returns early with `partial=True` when `stop`
is set. `progress`, if given, receives a `Progress` about once a second, always from the
calling thread (every engine keeps its clock there), so it must return quickly: a slow
callback delays the asyncio engine's loop.

Client-side package: it imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .metrics import LoadResult
from .schedule import Progress
from .workload import Workload

__all__ = ["LoadResult", "Progress", "Workload", "prepare", "run_load"]


def prepare() -> None:
    """Open the client's one-time library state now (uvloop keeps a process-wide pipe pair from
    its first loop on), so that the harness's per-server fd accounting does not see it as a leak."""
    from .engine_asyncio import new_loop

    loop, _name = new_loop()
    loop.close()


def run_load(
    workload: Workload,
    progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Run `workload` against its server and return what was measured.

    Raises ValueError (one sentence) for an impossible workload or a host that does not
    resolve, before any request is sent.
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
