"""Beyond one machine: a server the harness did not start (`--url`), and load from several
processes or hosts (`--engine distributed`, Locust's master/worker runners, `harness.distributed`).

    python -m harness --url http://HOST:PORT/PATH                 measure any HTTP/1.1 server
    python -m harness --engine distributed --load-workers 2 ...   the same engine, 2 local workers
    python -m harness --engine distributed --master-bind HOST:PORT --expect-workers N ...
    python -m harness worker --master HOST:PORT                   on each load host

An external target is one case, named after its URL. The load, the hang accounting and the
outcome classes are the usual ones; what needs the server's process tree -- its CPU, memory,
open fds, forensics, how it stopped -- is absent, and the record says so (`server: "external"`,
nulls) rather than showing zeros. `client_bound` is judged on the client's own CPU only: the
machine's load says nothing about which side is the bottleneck when the server may be elsewhere.

A distributed run starts one master for the whole run (and its local workers, if asked), hands
every case's workload to it in place of `run_load`, and keeps each worker's own counts and
histogram in the record (`workers`), so anyone can check that the merge is exact.
Everything here is checked before anything starts (one sentence, exit 2).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from . import plan as planning
from .errors import COMPLETED, UsageError, plain
from .load import LoadResult, Progress
from .load import run_load as local_run_load
from .placement import for_external
from .results.derive import CLIENT_BOUND_UTIL, CpuMark, Measurements, derive
from .results.records import StrategyRecord

DISTRIBUTED = "distributed"  # the --engine value; its workers run the asyncio engine
WORKER_ENGINE = "asyncio"
EXTERNAL = "external"  # a Case's `source` and a record's `server` for --url
MAX_LOAD_WORKERS = 64
DEFAULT_HTTP_PORT = 80

RunLoad = Callable[[Any, Callable[[Progress], None] | None, threading.Event | None], LoadResult]


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> Target:
    """`http://HOST[:PORT]/PATH` -> Target; UsageError in one sentence for anything else."""
    if any(ch.isspace() for ch in url) or not url.isascii():
        raise UsageError("--url %r must be plain ASCII with no spaces (percent-encode the path)" % url)
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address, for one
        raise UsageError(
            "--url %r is not a URL; write http://HOST:PORT/PATH (an IPv6 host in brackets)" % url
        ) from None
    if parts.scheme != "http":
        raise UsageError(
            "--url %r: only http:// URLs can be measured (the load generator speaks plain HTTP/1.1, no TLS)" % url
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # 0 is "any port" to bind, and no port to connect to
        raise UsageError("--url %r has a port that is not a number from 1 to 65535" % url)
    if not parts.hostname:
        raise UsageError("--url %r names no host; write http://HOST:PORT/PATH" % url)
    if parts.username or parts.password:
        raise UsageError("--url %r carries credentials, which the load generator does not send" % url)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return Target(url, parts.hostname, DEFAULT_HTTP_PORT if port is None else port, path)


@dataclass(frozen=True)
class Remote:
    """The checked --url and --engine distributed options of a run."""

    target: Target | None = None
    distributed: bool = False
    local_workers: int = 0
    bind: str = "127.0.0.1"
    port: int | None = None
    expect_workers: int = 0
    reports: list[list[dict[str, Any]]] = field(default_factory=list, compare=False)  # per load run, in order

    def load_args(self, args: argparse.Namespace) -> argparse.Namespace:
        """The args `settings_from` checks: a distributed run's workers run the asyncio engine."""
        if not self.distributed:
            return args
        return argparse.Namespace(**{**vars(args), "engine": WORKER_ENGINE})

    def cases(self) -> list[planning.Case]:
        """The one case of an external target, or [] (the strategies' cases are the plan's)."""
        if self.target is None:
            return []
        return [
            planning.Case(self.target.url, "", EXTERNAL, None, sys.executable, "", None),
        ]

    @contextmanager
    def load(self, quiet: bool = False) -> Iterator[RunLoad | None]:
        """For the whole run: the master (and local workers) of a distributed run, as a callable
        that takes `run_load`'s place; None when the load runs in this process as usual."""
        if not self.distributed:
            yield None
            return
        from .distributed.client import DistributedError, DistributedLoad

        where = "%d local worker(s)" % self.local_workers if self.local_workers else "%d worker(s) to connect to %s:%s"
        if not self.local_workers:
            where = where % (self.expect_workers, self.bind, self.port)
        if not quiet:
            sys.stderr.write("hangbench: starting the distributed master; waiting for %s\n" % where)
        try:
            with DistributedLoad(
                expect_workers=self.expect_workers, bind=self.bind, port=self.port, local_workers=self.local_workers
            ) as engine:

                def run(workload: Any, progress: Any = None, stop: Any = None) -> LoadResult:
                    merged, workers = engine.run(workload)
                    self.reports.append([_worker_summary(w) for w in workers])
                    return merged

                yield run
        except DistributedError as error:
            raise UsageError("the distributed load could not run: %s" % error) from None

    def annotate(self, record: StrategyRecord) -> StrategyRecord:
        """The record with the workers' own results of its load run, if it was distributed."""
        if not self.distributed or not self.reports:
            return record
        return replace(record, workers=self.reports.pop())


def _worker_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of one worker: enough to check the merge exactly."""
    result = report.get("result") or {}
    out: dict[str, Any] = {"worker": str(report.get("worker"))}
    if report.get("error"):
        out["error"] = str(report["error"])
    for key in ("counts", "histogram", "elapsed_s", "throughput_rps", "client_cpu_util"):
        if key in result:
            out[key] = plain(result[key])
    return out


def remote_from(args: argparse.Namespace) -> Remote:
    """Check --url and the distributed options; UsageError naming the first bad one."""
    url = getattr(args, "url", None)
    target = None
    if url is not None:
        target = parse_url(url)
        if args.strategy != "all":
            raise UsageError("give either --url (a server already running) or --strategy (servers to start), not both")
        _check_no_server_options(args)
    engine = getattr(args, "engine", None)
    local = getattr(args, "load_workers", None)
    bind = getattr(args, "master_bind", None)
    expect = getattr(args, "expect_workers", None)
    if engine != DISTRIBUTED:
        for flag, value in (("--load-workers", local), ("--master-bind", bind), ("--expect-workers", expect)):
            if value is not None:
                raise UsageError("%s needs --engine distributed" % flag)
        return Remote(target=target)
    if args.client_procs not in (1, "auto"):
        raise UsageError("--client-procs is for the asyncio engine; with --engine distributed use --load-workers N")
    if local is not None and (bind is not None or expect is not None):
        raise UsageError("give either --load-workers N (local workers) or --master-bind with --expect-workers")
    if local is not None:
        if not 1 <= local <= MAX_LOAD_WORKERS:
            raise UsageError("--load-workers must be between 1 and %d (got %d)" % (MAX_LOAD_WORKERS, local))
        if local > args.concurrency:
            raise UsageError("--concurrency (%d) must be at least --load-workers (%d)" % (args.concurrency, local))
        return Remote(target=target, distributed=True, local_workers=local, expect_workers=local)
    if bind is None or expect is None:
        raise UsageError(
            "--engine distributed needs --load-workers N, or --master-bind HOST:PORT and --expect-workers N"
        )
    from .distributed.protocol import parse_master

    try:
        host, port = parse_master(bind)
    except ValueError as error:
        raise UsageError(str(error).replace("--master", "--master-bind")) from None
    if not 1 <= expect <= MAX_LOAD_WORKERS:
        raise UsageError("--expect-workers must be between 1 and %d (got %d)" % (MAX_LOAD_WORKERS, expect))
    if target is not None and not _local(host) and _local(target.host):
        raise UsageError(
            "workers on other hosts cannot reach --url %s: to them %s is themselves; give an address they can reach"
            % (target.url, target.host)
        )
    if target is None and not _local(host) and _local(getattr(args, "host", "127.0.0.1")):
        raise UsageError(
            "workers on other hosts cannot reach servers bound to --host %s; give --host an address of this "
            "host they can reach (the one in --master-bind, say)" % getattr(args, "host", "127.0.0.1")
        )
    if expect > args.concurrency:
        raise UsageError("--concurrency (%d) must be at least --expect-workers (%d)" % (args.concurrency, expect))
    return Remote(target=target, distributed=True, bind=host, port=port, expect_workers=expect)


# Options of the servers the run starts: with --url no server is started, so they would be ignored.
SERVER_ONLY = (
    "workers",
    "emulate",
    "python",
    "start_method",
    "strategy_option",
    "head_timeout",
    "max_connections",
    "plugin",
    "backlog",
    "idle_timeout",
    "executor",
)
_LISTS = ("emulate", "strategy_option", "plugin")  # repeatable: given exactly when not empty


def _check_no_server_options(args: argparse.Namespace) -> None:
    from .matrix import given

    typed = given(args, [key for key in SERVER_ONLY if key not in _LISTS and hasattr(args, key)])
    typed.update({key: True for key in _LISTS if getattr(args, key, None)})
    for key in SERVER_ONLY:  # in a fixed order: the message names the same option every time
        if key in typed:
            raise UsageError(
                "--%s applies to the servers the run starts; with --url no server is started, so it would be ignored"
                % key.replace("_", "-")
            )


def _local(host: str) -> bool:
    """Loopback or the wildcard: an address that means "this host" only to this host."""
    import ipaddress

    if host in ("localhost", "*", ""):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def run_external(
    case: planning.Case, settings: Any, printer: Any, run_load: RunLoad | None, stop: threading.Event
) -> StrategyRecord:
    """Measure a server the harness did not start: the load as usual, no server-side numbers."""
    target = parse_url(case.strategy)
    placed = for_external(settings)  # --client-procs auto: from this machine's CPUs (harness.placement)
    workload = replace(
        settings.workload, host=target.host, port=target.port, path=target.path, client_procs=placed.procs
    )
    base = StrategyRecord(
        strategy=case.strategy,
        status=COMPLETED,
        server=EXTERNAL,
        url=target.url,
        python="",
        client_procs=placed.procs,
        client_procs_why=placed.why,
    )
    started = time.monotonic()
    before = _machine_mark()
    try:
        result = (run_load or local_run_load)(workload, printer.progress, stop)
    except ValueError as error:  # a host that does not resolve, for one
        raise UsageError("--url %s: %s" % (target.url, error)) from None
    record = derive(base, Measurements(result, before, _machine_mark(), None, (0, 0), workload.concurrency))
    return replace(
        record,
        server_cpu_util=None,
        server_cpu_s_per_1k=None,
        server_peak_rss_mb=None,
        server_fds=[],
        leaks=[],
        client_bound=result.client_cpu_util >= CLIENT_BOUND_UTIL,
        wall_s=round(time.monotonic() - started, 3),
    )


def _machine_mark() -> CpuMark:
    """The load host's CPU counters (the server's are not ours to read)."""
    import psutil

    times = psutil.cpu_times()
    total = sum(times)
    return CpuMark(0.0, 0, total - times.idle - getattr(times, "iowait", 0.0), total, time.monotonic())
