"""The run's command line, checked, as one frozen `Settings`: what every case shares.

Every option a user can get wrong is checked here, before any server starts, and refused with
one sentence that names the option as the user typed it (`--workers must be ...`), never a
field name: a bad number would otherwise reach a server and come back as a failed row blamed on
the strategy, or as a fork storm (`--workers 100000`). The load generator's `Workload.check()`
and the server's own checks stay as a second line of defence for their other callers.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

from . import placement
from . import plan as planning
from .errors import UsageError
from .load import Workload, engines
from .load import workload as limits
from .plugin_probe import probe_plugin
from .server.app import BadLimits, Limits
from .server.process import MAX_BACKLOG, strategy_options
from .server.strategy import StrategyError

MAX_WORKERS = 1024  # processes or threads per server; more is a fork storm, not a benchmark
MAX_SECONDS = 24 * 3600.0  # bound on any time option: nan and inf would unbound every wait
FORENSICS_TIMEOUT_S = 15.0
# The default measurement: long enough for a 2 s deadline to show hangs and for the percentiles
# to settle, short enough that `--strategy all` (14 cases with the twins) stays near 2 minutes.
# Decisions between strategies want --repeat (or --suite), not a longer single run.
DEFAULT_DURATION_S = 5.0
DEFAULT_WARMUP_S = 1.0
LOCAL_NAMES = ("localhost",)


@dataclass(frozen=True)
class Settings:
    """What every case shares: the workload template and the run's bounds."""

    workload: Workload
    server_args: List[str]
    ready_timeout_s: float
    stop_grace_s: float
    measure_bound_s: float
    # --engine distributed: the master's load runner, in place of harness.load.run_load (harness.remote)
    run_load: Optional[Callable[..., Any]] = None
    # --client-procs auto: each case chooses its client processes (harness.placement); the
    # workload's client_procs is then 1 until the case replaces it. --pin: disjoint CPUs.
    client_procs_auto: bool = False
    pin: bool = False

    def case_budget_s(self) -> float:
        w = self.workload
        # The load engines' own bound on a run (warm-up, measurement, last deadline), capped for
        # a --requests run, whose worst case (every request hanging in turn) has no useful bound.
        load_s = min(engines.run_bound_s(w), w.warmup_s + self.measure_bound_s + w.deadline_s)
        return self.ready_timeout_s + load_s + 2 * self.stop_grace_s + FORENSICS_TIMEOUT_S + 10


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the parsed `run` options, or UsageError naming the first bad option."""
    _check_server_options(args)
    if args.duration is not None and args.requests is not None:
        raise UsageError("give either --duration or --requests, not both")
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION_S
    if duration is not None:
        _seconds("--duration", duration, minimum=0.0, inclusive=False)
    if args.requests is not None:
        _between("--requests", args.requests, 1, 10**9)
    _seconds("--warmup", args.warmup, minimum=0.0)
    _seconds("--deadline", args.deadline, minimum=0.0, inclusive=False, maximum=limits.MAX_DEADLINE_S)
    _between("--concurrency", args.concurrency, 1, limits.MAX_CONCURRENCY)
    _between("--timelines", getattr(args, "timelines", 20), 0, limits.MAX_TIMELINES)
    procs_auto = args.client_procs == placement.AUTO
    client_procs = 1 if procs_auto else args.client_procs
    _between("--client-procs", client_procs, 1, limits.MAX_CLIENT_PROCS)
    if client_procs > 1 and not engines.get(args.engine).multi_process:
        multi = " or ".join("--engine " + e.name for e in engines.ENGINES if e.multi_process)
        raise UsageError("--client-procs above 1 needs %s (the %s engine is one process)" % (multi, args.engine))
    if client_procs > args.concurrency:
        raise UsageError(
            "--concurrency (%d) must be at least --client-procs (%d): each client process needs a connection"
            % (args.concurrency, client_procs)
        )
    pin = bool(getattr(args, "pin", False))
    if pin and placement.can_pin() is not None:
        raise UsageError(str(placement.can_pin()))
    if args.connection == "keep-alive" and args.read == "eof":
        raise UsageError(
            "--connection keep-alive with --read eof cannot work: a keep-alive server does not close after "
            "a response, so every request would hang; use --read content-length or --connection close"
        )
    _seconds("--ready-timeout", args.ready_timeout, minimum=0.0, inclusive=False)
    _seconds("--stop-grace", args.stop_grace, minimum=0.0, inclusive=False)
    workload = Workload(
        host=args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1",
        port=1,  # replaced by each server's real port
        engine=args.engine,
        concurrency=args.concurrency,
        duration_s=duration,
        requests=args.requests,
        warmup_s=args.warmup,
        connection=args.connection,
        read=args.read,
        deadline_s=args.deadline,
        timelines=getattr(args, "timelines", 20),
        cpu_us=args.cpu_us,
        sleep_ms=args.sleep_ms,
        bytes=args.bytes,
        client_procs=client_procs,
    )
    try:
        workload.check()
    except ValueError as error:  # every option was checked above; this is a limit added since
        raise UsageError("the workload cannot run: %s" % error) from None
    # A --requests run has no natural end if the server is slow: bound it all the same.
    measure_bound = duration if duration is not None else planning.MAX_REQUESTS_RUN_S
    return Settings(
        workload,
        planning.server_args(args),
        args.ready_timeout,
        args.stop_grace,
        measure_bound,
        client_procs_auto=procs_auto,
        pin=pin,
    )


def _check_server_options(args: argparse.Namespace) -> None:
    """The `serve` options a run passes on to every server."""
    if args.port is not None:
        raise UsageError(
            "--port is not an option of the run: each server binds a free port of its own "
            "(to serve one strategy on a port of your choosing, use `serve --port N`)"
        )
    check_host(args.host)
    if args.workers is not None:
        _between("--workers", args.workers, 1, MAX_WORKERS)
    _between("--backlog", args.backlog, 1, MAX_BACKLOG)
    _seconds("--idle-timeout", args.idle_timeout, minimum=0.0, inclusive=False)
    _between("--cpu-us", args.cpu_us, 0, limits.MAX_CPU_US)
    _seconds("--sleep-ms", args.sleep_ms, minimum=0.0, maximum=limits.MAX_SLEEP_MS, unit="milliseconds")
    _between("--bytes", args.bytes, 0, limits.MAX_BYTES)
    check_limits(args)
    check_emulations(args.emulate)
    check_plugins(args.plugin)
    try:
        strategy_options(args)
    except StrategyError as error:
        raise UsageError(str(error)) from None


def check_host(host: str) -> None:
    """A numeric IPv4/IPv6 address (or localhost): a name would be resolved differently by the
    server, which binds it, and by the client, which connects to it."""
    if host in LOCAL_NAMES:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError("--host %r is not an IPv4 or IPv6 address (e.g. 127.0.0.1 or ::1)" % host) from None


def check_limits(args: argparse.Namespace) -> None:
    """--head-timeout and --max-connections, by the servers' own check (`Limits.validated`)."""
    defaults = Limits()
    head = getattr(args, "head_timeout", defaults.head_timeout_s)
    cap = getattr(args, "max_connections", defaults.max_connections)
    for option, bounds in (
        ("--head-timeout", Limits(head_timeout_s=head)),
        ("--max-connections", Limits(max_connections=cap)),
    ):
        try:
            bounds.validated()
        except BadLimits as error:
            raise UsageError("%s: %s" % (option, error)) from None


def check_emulations(names: List[str]) -> None:
    from .server.emulate import validate

    for index, name in enumerate(names):
        if name in names[:index]:
            raise UsageError("--emulate %s is given twice; give each emulation once" % name)
    try:
        validate(names)
    except ValueError as error:
        raise UsageError("--emulate: %s" % error) from None


def check_plugins(specs: List[str]) -> None:
    """Each --plugin must exist (a file) and import cleanly, first in a subprocess: an import
    that ends its process (os._exit, a signal to itself, fds 1 and 2 closed, KeyboardInterrupt)
    must end the probe, not the harness. Only then is it imported in this process (harness.plan)."""
    if len(set(specs)) < len(specs):
        raise UsageError(
            "--plugin names %s twice; name each plugin once" % next(s for s in specs if specs.count(s) > 1)
        )
    for spec in specs:
        path = spec.partition(":")[0] if not spec.endswith(".py") else spec
        if (spec.endswith(".py") or "/" in path) and not Path(path).is_file():
            raise UsageError("--plugin %s: no such file" % spec)
    for spec in specs:
        probe_plugin(spec)


def _between(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise UsageError("%s must be between %d and %d (got %d)" % (option, low, high, value))


def _seconds(
    option: str,
    value: Union[int, float],
    minimum: float,
    inclusive: bool = True,
    maximum: Optional[float] = None,
    unit: str = "seconds",
) -> None:
    maximum = MAX_SECONDS if maximum is None else maximum
    low_ok = value >= minimum if inclusive else value > minimum
    if not (math.isfinite(value) and low_ok and value <= maximum):
        more = "0 or more" if inclusive and minimum == 0 else "more than %g" % minimum
        raise UsageError("%s must be %s and at most %g %s (got %g)" % (option, more, maximum, unit, value))
