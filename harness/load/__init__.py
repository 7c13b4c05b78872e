"""Load generators: drive a server with a `Workload` and return a `LoadResult`.

`run_load` is the one entry point the orchestrator needs. It picks the engine from the
registry (`engines.ENGINES`: name, runner module, load models, multi-process support):
- `asyncio` (default): callback-driven event loop, uvloop when importable; the fast client,
  closed or open loop, optionally spread over `client_procs` processes whose results merge
  exactly;
- `threads`: the article's client, a ThreadPoolExecutor of blocking sockets; closed loop only.

It blocks for warm-up + duration (+ at most the deadline to let in-flight requests end), is
bounded in time whatever the server does (`engines.run_bound_s(workload)` is that bound, the
one calculation every engine and the multi-process driver use), and returns early with
`partial=True` when `stop` is set. `progress`, if given, receives a `Progress` about once a
second, always from the calling thread (every engine keeps its clock there), so it must return
quickly: a slow callback delays the asyncio engine's loop.

Load models
-----------
Closed loop (default): `concurrency` connections, each sending its next request when the last
one ends. Open loop: give `Workload(rate=R)` (requests/s in total over all client processes)
and optionally `arrival="poisson"` and `seed=N`:

    run_load(Workload("127.0.0.1", port, rate=2000.0, arrival="uniform", concurrency=64,
                      duration_s=10.0, deadline_s=2.0))

Requests are sent at intended times whatever the responses do; `concurrency` is the connection
pool (a due request with no free connection waits, and the wait counts). Latency is measured
from the intended time (`histogram`, `latency_us`: coordinated-omission free); the uncorrected
send-to-response time is in `service_histogram`, `service_latency_us`. A request with no
complete response within `deadline_s` of its intended time is a `hang`, sent or not.
Sends happen at millisecond granularity (the event loops' timer resolution; responses also
trigger due sends), so a request typically leaves up to ~1 ms after its intended time, and
that lag is part of its latency, as in wrk2; `schedule_lag_us` shows it.

Result fields (LoadResult, see metrics.py for the full list): `load_model` ("closed"|"open"),
`intended_rate_rps` (None in closed loop), `achieved_rate_rps` (measured requests sent per
second), `requests_intended`/`requests_sent`/`late_sends`, `schedule_lag_us` ({"p50","p99","max"}
of send minus intended time, open loop only, else {}), and for every run `intervals`: one
`{"t_s", "counts", "p50_us", "p99_us", "max_us"}` per second of measurement (by the second a
request ended), with `interval_histograms` that add up exactly to `histogram`.
`LoadResult.behind_schedule` (sent < 99 % of due) and `LoadResult.client_bound_schedule`
(behind, and the client's fault: >= 1 % of due requests dispatched > 10 ms late with a
connection free, or a client process >= 0.9 of a core busy) say whether the client kept up.

Errors
------
Every user mistake is a ValueError with a one-sentence message, raised before any request:
`errors.WorkloadError` (a bad number or name), its subclasses `errors.UnsupportedLoadModel`
(a rate for the closed-loop-only threads engine) and `errors.HostError` (a host that does not
resolve). `procs.ClientProcessError` (a RuntimeError) is a harness bug, not a user's.

Client-side package: it imports nothing from the server side (they meet only over TCP).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import engines
from .errors import HostError, UnsupportedLoadModel, WorkloadError
from .metrics import LoadResult
from .schedule import Progress
from .workload import Workload

__all__ = [
    "HostError",
    "LoadResult",
    "Progress",
    "UnsupportedLoadModel",
    "Workload",
    "WorkloadError",
    "engines",
    "prepare",
    "run_load",
]


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

    Raises a ValueError subclass (one sentence, see the module docstring) for an impossible
    workload or a host that does not resolve, before any request is sent.
    """
    workload.check()
    engine = engines.get(workload.engine)
    if workload.client_procs > 1 and engine.multi_process:
        from . import procs

        return procs.run(workload, progress, stop)
    result: LoadResult = engine.runner().run(workload, progress, stop)
    return result
