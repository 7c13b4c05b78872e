"""Where the load generator runs: how many client processes (`--client-procs auto`) and, with
`--pin`, on which CPUs the server and the client run.

Why it is shaped so:
- The choice is made per case, once its server runs, from the processes it runs: a
  one-process strategy (threads, gevent, asyncio: one GIL) can use about one core, one of N
  processes up to N (counted, not declared, so plugins and production twins are judged alike).
  The client gets one process per core the server can use (a Python server never answers much
  faster than a client process can ask), but only as many as the cores the server leaves free,
  or half the machine when the server can use all of it: more client processes than that only
  take CPU from the server they measure. On 2 cores this is always 1 process (measured: a
  second process made no row faster and costs a process start per case); on 8 cores a
  reuseport server gets 4.
- `--pin` splits the CPUs this process may use in two disjoint sets (the server the larger
  half; on 2 CPUs: server CPU 0, client CPU 1). Linux's affinity mask belongs to a *thread*
  and is inherited by whatever that thread starts, so the calling thread takes the server's
  CPUs just while it starts the server (its workers inherit them), then the client's while it
  runs the load (client processes inherit them), and gets its own mask back after each. (The
  supervisor's own light threads started with the server -- output pump, sampler -- share the
  server's CPUs.)
- A server the harness did not start (`--url`) has no processes to count and its CPU use is
  unknown (it may be nginx on this machine, or on another): auto then gives one client process
  per CPU, as wrk is run with one thread per core (`-t` = cores). Against nginx on 2 cores, two
  processes measured better than one in both connection modes (docs/load-generator.md).
- The decision (`Placement`) is recorded in each case's record, with the reason in words.

Pure functions (`auto_client_procs`, `auto_external_procs`, `split_cpus`) hold the rules, so
they are tested without a machine of each size.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

from .load import engines

if TYPE_CHECKING:
    from .settings import Settings

AUTO = "auto"
MAX_AUTO_PROCS = 16  # beyond this, spawning and merging cost more than a process adds


@dataclass(frozen=True)
class Placement:
    """One case's client processes and CPUs (empty tuples: not pinned)."""

    procs: int
    why: str
    server_cpus: Tuple[int, ...] = ()
    client_cpus: Tuple[int, ...] = ()


def available_cpus() -> List[int]:
    """The CPUs this process may run on (its affinity mask, which taskset and cgroups narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def can_pin() -> Optional[str]:
    """None if `--pin` can work here, else why not (one sentence, for the user)."""
    if not hasattr(os, "sched_setaffinity"):
        return "--pin needs CPU affinity (sched_setaffinity), which this platform does not have"
    cpus = available_cpus()
    if len(cpus) < 2:
        return "--pin needs at least 2 CPUs to put the server and the client on different ones (this process may use 1)"
    return None


def split_cpus(cpus: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """(server CPUs, client CPUs): disjoint halves, the server's the larger when odd.

    Raises ValueError for fewer than 2 CPUs (there is nothing to split)."""
    ordered = tuple(sorted(set(cpus)))
    if len(ordered) < 2:
        raise ValueError("at least 2 CPUs are needed to split them between server and client")
    half = (len(ordered) + 1) // 2
    return ordered[:half], ordered[half:]


def auto_client_procs(cores: int, server_cores: int, concurrency: int, multi_process: bool = True) -> Tuple[int, str]:
    """(client processes, why) for `cores` CPUs shared by a server expected to use up to
    `server_cores` of them (with --pin: the client's own CPUs and the server's)."""
    if not multi_process:
        return 1, "the engine runs in one process"
    cores = max(1, cores)
    server = max(1, min(server_cores, cores))
    spare = cores - server
    share = max(spare, cores // 2)  # a server that can use every core shares the machine half and half
    procs = max(1, min(server, share, concurrency, MAX_AUTO_PROCS))
    why = "%d CPU(s), server expected to use up to %d: one client process per server core, at most %d" % (
        cores,
        server,
        max(1, share),
    )
    if procs == concurrency and concurrency < min(server, share):
        why += ", bounded by the concurrency"
    return procs, why


def auto_external_procs(cores: int, concurrency: int) -> Tuple[int, str]:
    """(client processes, why) against a server the harness did not start (`--url`) on a machine
    of `cores` CPUs: its CPU use cannot be known, so one client process per CPU, as wrk -t."""
    cores = max(1, cores)
    procs = max(1, min(cores, concurrency, MAX_AUTO_PROCS))
    why = "a server the harness did not start (its CPU use is unknown), %d CPU(s): one client process per CPU" % cores
    if procs == concurrency and concurrency < cores:
        why += ", bounded by the concurrency"
    return procs, why


def cpus_for(pin: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """(server CPUs, client CPUs) for a case: the split with `pin`, else two empty tuples."""
    cpus = available_cpus()
    return split_cpus(cpus) if pin and len(cpus) >= 2 else ((), ())


def place(
    requested: int,
    auto: bool,
    concurrency: int,
    multi_process_engine: bool,
    server_processes: int,
    cpus: Tuple[Tuple[int, ...], Tuple[int, ...]] = ((), ()),
) -> Placement:
    """The placement of one case: `requested` processes, or the auto choice for a server that
    runs `server_processes` processes (each can keep a core busy; a one-process server, one),
    on `cpus` (server's, client's: empty when not pinned)."""
    server_cpus, client_cpus = cpus
    if not auto:
        return Placement(requested, "given (--client-procs %d)" % requested, server_cpus, client_cpus)
    if not multi_process_engine:
        return Placement(1, "auto: the engine runs in one process", server_cpus, client_cpus)
    processes = "the server runs %d process%s" % (server_processes, "" if server_processes == 1 else "es")
    if client_cpus:
        # Pinned: the client has its own CPUs; one process per client CPU the server can keep busy.
        server_cores = max(1, min(server_processes, len(server_cpus)))
        procs = max(1, min(len(client_cpus), server_cores, concurrency, MAX_AUTO_PROCS))
        why = "auto, pinned: %s on %d CPU(s), the client on %d: one client process per busy server core" % (
            processes,
            len(server_cpus),
            len(client_cpus),
        )
        return Placement(procs, why, server_cpus, client_cpus)
    procs, why = auto_client_procs(len(available_cpus()), server_processes, concurrency)
    return Placement(procs, "auto: %s; %s" % (processes, why))


def place_external(requested: int, auto: bool, concurrency: int, multi_process_engine: bool) -> Placement:
    """The placement of a `--url` case: `requested` processes, or the auto choice from this
    machine's CPUs (there is no server process to count). Never pinned."""
    if not auto:
        return Placement(requested, "given (--client-procs %d)" % requested)
    if not multi_process_engine:
        return Placement(1, "auto: the engine runs in one process")
    procs, why = auto_external_procs(len(available_cpus()), concurrency)
    return Placement(procs, "auto: %s" % why)


def affinity_of(pid: int) -> Tuple[int, ...]:
    """The CPUs a process (or thread id) may run on; () where that cannot be read."""
    try:
        return tuple(sorted(os.sched_getaffinity(pid)))
    except (AttributeError, OSError):
        return ()


@contextmanager
def thread_on(cpus: Sequence[int]) -> Iterator[bool]:
    """Run the calling thread (and whatever it starts meanwhile) on `cpus`, then restore its
    mask. Yields whether it could; a refusal (EPERM, or CPUs outside a cpuset) is one warning
    line on stderr and the block runs unpinned."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield False
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as error:
        print(
            "hangbench: warning: cannot pin to CPUs %s (%s); running unpinned" % (_cpu_list(cpus), error),
            file=sys.stderr,
        )
        yield False
        return
    try:
        yield True
    finally:
        try:
            os.sched_setaffinity(0, before)
        except OSError:
            pass  # the mask it had is a subset of what it may use: cannot fail but on a cpuset change


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(cpu) for cpu in cpus)


def for_case(settings: Settings, server_processes: int, cpus: Tuple[Tuple[int, ...], Tuple[int, ...]]) -> Placement:
    """The placement of one case of a run (`Settings` says auto), once its server runs."""
    bound, engine_multi = _bounds(settings)
    return place(
        settings.workload.client_procs, settings.client_procs_auto, bound, engine_multi, max(1, server_processes), cpus
    )


def for_external(settings: Settings) -> Placement:
    """The placement of a `--url` case of a run (a server the harness did not start)."""
    bound, engine_multi = _bounds(settings)
    return place_external(settings.workload.client_procs, settings.client_procs_auto, bound, engine_multi)


def _bounds(settings: Settings) -> Tuple[int, bool]:
    """(most client processes the workload can use, whether its engine can use several)."""
    workload = settings.workload
    bound = min(workload.concurrency, workload.requests or workload.concurrency)
    return bound, settings.run_load is None and engines.get(workload.engine).multi_process


def pinned(placed: Placement, server_pid: Optional[int], client_pinned: bool) -> Dict[str, List[int]]:
    """What the record says of --pin: the CPUs the server's root process and the client ran on,
    read back from the kernel for the server; {} when the case was not pinned."""
    if not placed.server_cpus:
        return {}
    server = list(affinity_of(server_pid)) if server_pid is not None else []
    return {"server": server, "client": list(placed.client_cpus) if client_pinned else []}
