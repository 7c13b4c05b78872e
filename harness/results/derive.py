"""From what a case measured to the numbers of its record: the one place a metric is derived.

The run gathers raw measurements into a `Measurements` record (the load generator's result, the
server's CPU and the machine's CPU at the start and end of the measured span, peak memory, open
fds) and `derive` turns them into the fields of a `StrategyRecord`. A new metric is a field in
`Measurements` (if it needs a new raw number), a line here, a field in `StrategyRecord` and a
row in results/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from ..errors import COMPLETED, NO_RESPONSE
from ..load.metrics import CLOSED, HANG, REFUSED, RESET, LoadResult
from .records import StrategyRecord

CLIENT_BOUND_UTIL = 0.85  # a client process this busy (fraction of one core) may be the bottleneck
MACHINE_SATURATED = 0.9  # share of all cores busy over the measurement
FD_GROWTH_SLACK = 64  # fds a server may open during a run for its own purposes (logs, pipes, workers)
NO_ANSWER = (HANG, REFUSED, RESET, CLOSED)  # outcomes in which no complete response came back


@dataclass(frozen=True)
class CpuMark:
    """CPU counters at one instant of the measurement."""

    server_cpu_s: float  # the whole server tree, so far
    requests_done: int  # requests ended so far in the measurement
    machine_busy_s: float  # all cores of the machine, busy seconds so far
    machine_total_s: float  # all cores of the machine, seconds so far
    at: float  # time.monotonic()


@dataclass(frozen=True)
class Measurements:
    """What one case measured, raw."""

    load: LoadResult
    start: CpuMark  # at the first progress report of the measurement (within a second of its start)
    end: CpuMark  # when the load ended
    peak_rss_bytes: Optional[int]  # the server tree's peak memory, if known, as `mem_kind`
    server_fds: Tuple[int, int]  # open fds of the server tree: before warm-up, at the end
    concurrency: int
    mem_kind: str = "rss"  # "pss" (shared pages counted once), "uss" or "rss" (summed over processes)


def derive(base: StrategyRecord, m: Measurements) -> StrategyRecord:
    result = m.load
    cpu_used = max(0.0, m.end.server_cpu_s - m.start.server_cpu_s)
    # CPU per request is taken over the same span for both: from the start mark to the end.
    served = result.total - m.start.requests_done if result.total > m.start.requests_done else result.total
    span = max(m.end.at - m.start.at, 1e-9)
    machine_total = m.end.machine_total_s - m.start.machine_total_s
    machine_busy = (m.end.machine_busy_s - m.start.machine_busy_s) / machine_total if machine_total > 0 else 0.0
    server_cores = cpu_used / span
    client_cores = result.client_cpu_s / result.elapsed_s if result.elapsed_s > 0 else 0.0
    record = replace(
        base,
        status=_status(base.status, result),
        requests=dict(result.counts),
        throughput_rps=result.throughput_rps,
        hang_rate=result.hang_rate,
        error_rate=result.error_rate,
        latency_us=dict(result.latency_us),
        histogram=result.histogram,
        elapsed_s=result.elapsed_s,
        client_cpu_util=result.client_cpu_util,
        client_cpu_s=round(result.client_cpu_s, 3),
        server_cpu_util=round(server_cores, 3),
        machine_cpu_busy=round(machine_busy, 3),
        client_bound=_client_bound(result, client_cores, server_cores, machine_busy),
        server_cpu_s_per_1k=(1000.0 * cpu_used / served) if served else None,
        server_peak_rss_mb=m.peak_rss_bytes / 2**20 if m.peak_rss_bytes else None,
        server_mem_kind=m.mem_kind if m.peak_rss_bytes else None,
        error_detail=dict(result.error_detail),
        server_fds=list(m.server_fds),
        partial=result.partial,
        load_model=result.load_model,
        intended_rate_rps=result.intended_rate_rps,
        achieved_rate_rps=result.achieved_rate_rps,
        service_histogram=result.service_histogram,
        service_latency_us=dict(result.service_latency_us),
        intervals=[dict(interval) for interval in result.intervals],
        schedule_lag_us=dict(result.schedule_lag_us),
        timelines=[dict(timeline) for timeline in result.timelines],
        hang_milestones=dict(result.hang_milestones),
    )
    before, after = m.server_fds
    # Open connections account for up to `concurrency` fds (twice, counting a dup'ing parent);
    # growth well past that is fds the server never closes.
    if after - before > 2 * m.concurrency + FD_GROWTH_SLACK:
        leak = "the server's open fds grew from %d to %d during the run" % (before, after)
        record = replace(record, leaks=[*record.leaks, leak])
    return record


def _status(status: str, result: LoadResult) -> str:
    """`no-response` for a measurement in which requests were sent and not one response (of any
    status code, even a malformed one) came back: `completed` would read as "it worked"."""
    if status != COMPLETED or result.partial or result.total == 0:
        return status
    answered = result.total - sum(result.counts.get(kind, 0) for kind in NO_ANSWER)
    return NO_RESPONSE if answered == 0 else status


def _client_bound(result: LoadResult, client_cores: float, server_cores: float, machine_busy: float) -> bool:
    """Open loop: the client could not keep the schedule (`LoadResult.client_bound_schedule`);
    a server that is slower than the rate leaves the client behind too, but that is the finding,
    and the row says the achieved rate instead. Closed loop: `is_client_bound`."""
    if result.load_model == "open":
        return result.client_bound_schedule
    return is_client_bound(result.client_cpu_util, client_cores, server_cores, machine_busy)


def is_client_bound(client_util_max: float, client_cores: float, server_cores: float, machine_busy: float) -> bool:
    """Was the load generator, rather than the server, the bottleneck?

    Either one client process used (nearly) a whole core, or every core of the machine was busy
    and the client took at least a third of the CPU the run used (client >= half the server's):
    on a saturated machine, CPU the client burns is CPU the server cannot have, so a cheaper
    client (wrk) would measure more.
    """
    if client_util_max >= CLIENT_BOUND_UTIL:
        return True
    return machine_busy >= MACHINE_SATURATED and client_cores >= 0.5 * server_cores
