"""The workload: what the load generator sends, how hard, for how long, and how it reads.

One frozen record describes a run completely, so it can be logged in a result, pickled to a
client process, or split between processes (`share`). `check()` turns every impossible
number into one clear sentence before any socket is opened; the engines trust a checked
workload and do no validation of their own.

Open loop: `rate` (requests/s in total over every client process) turns the run open-loop:
requests are sent at intended times drawn from `arrival` ("uniform" or "poisson", seeded by
`seed` so that a run can be repeated exactly), and `concurrency` becomes the connection pool.
`share(n)` hands process i the arrivals i, i+n, i+2n... of the uniform schedule (or an
independent Poisson stream of rate/n: the superposition is Poisson at `rate`), recorded as
`stream`/`streams`, so the processes together send the one schedule the user asked for.

Paced closed loop (`rate` with `paced`): Locust's `constant_throughput`. Each connection starts
a request every `pace_period_s()`, but only once its previous response is in: a slow server
slows the client (coordinated omission, kept on purpose). It is the closed-loop run "at the
same throughput" as an open-loop run at `rate`, which a plain closed loop cannot be slowed to.

The work limits mirror the server's `harness.server.app` limits on purpose, but are copied rather than
imported: the client side never imports the server side (they meet only over TCP).
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, replace

from . import engines
from .errors import UnsupportedLoadModel, WorkloadError

ENGINES = engines.ENGINE_NAMES
ARRIVALS = ("uniform", "poisson")
CONNECTIONS = ("close", "keep-alive")
READ_MODES = ("content-length", "eof")

MAX_CONCURRENCY = 20_000  # one socket each; beyond this the client's fd limit is the finding
MAX_CLIENT_PROCS = 64
MAX_DEADLINE_S = 60.0  # the latency histogram's range
MAX_TIMELINES = 10_000  # kept in the results JSON: bounded
MAX_CPU_US = 10_000_000
MAX_SLEEP_MS = 60_000.0
MAX_BYTES = 64 * 1024 * 1024
MAX_RATE = 1_000_000.0  # requests/s; far beyond what one Python client process can send


@dataclass(frozen=True)
class Workload:
    host: str
    port: int
    engine: str = "asyncio"
    concurrency: int = 32
    duration_s: float | None = 10.0  # measurement length; None when `requests` is used
    requests: int | None = None  # alternatively: stop after N measured requests
    warmup_s: float = 2.0  # outcomes of requests started during warm-up are discarded
    connection: str = "close"  # "close" | "keep-alive": the `Connection:` header sent
    read: str = "content-length"  # "content-length" | "eof" (read until the server closes)
    deadline_s: float = 2.0  # no complete response within this: the request is a `hang`
    cpu_us: int = 0
    sleep_ms: float = 0.0
    bytes: int = 64
    client_procs: int = 1  # asyncio engine only: spread connections over N processes
    rate: float | None = None  # open loop: requests/s in total; None: closed loop
    paced: bool = False  # with `rate`: a closed loop paced at it (without one: a plain closed loop)
    arrival: str = "uniform"  # open loop: "uniform" | "poisson" intended start times
    seed: int = 0  # open loop: seeds the poisson arrivals (a run can be repeated exactly)
    stream: int = 0  # open loop, set by share(): this process's part of the schedule...
    streams: int = 1  # ...out of this many
    path: str | None = None  # --url: the request target as given; None: /work?... with the work above
    timelines: int = 20  # hung or failed requests whose milestones are kept, per client process

    @property
    def load_model(self) -> str:
        """ "open" when a rate is given (unless paced), else "closed"."""
        return engines.CLOSED if self.rate is None or self.paced else engines.OPEN

    @property
    def is_paced(self) -> bool:
        """A closed loop paced at `rate`."""
        return self.paced and self.rate is not None

    def share_rate(self) -> float:
        """The requests/s this process's part of the schedule sends (open or paced loop)."""
        if self.rate is None:
            raise WorkloadError("a closed-loop workload has no rate")
        return self.rate / self.streams

    def pace_period_s(self) -> float:
        """Paced closed loop: the interval between one connection's request starts, so that
        this process's connections together start `share_rate()` requests a second."""
        return self.concurrency / self.share_rate()

    def target(self) -> str:
        if self.path is not None:
            return self.path
        return "/work?cpu_us=%d&sleep_ms=%s&bytes=%d" % (self.cpu_us, _number(self.sleep_ms), self.bytes)

    def request_bytes(self) -> builtins.bytes:  # `bytes` is a field here
        """The one request every connection sends, built once per run (never per request)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return (
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: hangbench\r\nConnection: %s\r\n\r\n"
            % (self.target(), host, self.port, self.connection)
        ).encode("ascii")

    @property
    def keep_alive(self) -> bool:
        return self.connection == "keep-alive"

    def check(self) -> Workload:
        """Return self, or raise WorkloadError (a ValueError) with one sentence naming the bad
        number; UnsupportedLoadModel (a WorkloadError) for a rate the engine cannot send."""
        _require(isinstance(self.host, str) and bool(self.host), "host must be a non-empty string")
        _require(
            _is_int(self.port) and 1 <= self.port <= 65535, "port must be between 1 and 65535 (got %r)" % (self.port,)
        )
        _require(self.engine in ENGINES, "engine must be one of %s (got %r)" % (", ".join(ENGINES), self.engine))
        _require(
            _is_int(self.concurrency) and 1 <= self.concurrency <= MAX_CONCURRENCY,
            "concurrency must be between 1 and %d (got %r)" % (MAX_CONCURRENCY, self.concurrency),
        )
        self._check_length()
        _require(
            _finite(self.warmup_s) and self.warmup_s >= 0,
            "warmup_s must be 0 or more seconds (got %r)" % (self.warmup_s,),
        )
        _require(
            self.connection in CONNECTIONS,
            "connection must be one of %s (got %r)" % (", ".join(CONNECTIONS), self.connection),
        )
        _require(self.read in READ_MODES, "read must be one of %s (got %r)" % (", ".join(READ_MODES), self.read))
        _require(
            _finite(self.deadline_s) and 0 < self.deadline_s <= MAX_DEADLINE_S,
            "deadline_s must be more than 0 and at most %g seconds (got %r)" % (MAX_DEADLINE_S, self.deadline_s),
        )
        _require(
            _is_int(self.cpu_us) and 0 <= self.cpu_us <= MAX_CPU_US,
            "cpu_us must be between 0 and %d (got %r)" % (MAX_CPU_US, self.cpu_us),
        )
        _require(
            _finite(self.sleep_ms) and 0 <= self.sleep_ms <= MAX_SLEEP_MS,
            "sleep_ms must be between 0 and %g (got %r)" % (MAX_SLEEP_MS, self.sleep_ms),
        )
        _require(
            _is_int(self.timelines) and 0 <= self.timelines <= MAX_TIMELINES,
            "timelines must be between 0 and %d (got %r)" % (MAX_TIMELINES, self.timelines),
        )
        _require(
            _is_int(self.bytes) and 0 <= self.bytes <= MAX_BYTES,
            "bytes must be between 0 and %d (got %r)" % (MAX_BYTES, self.bytes),
        )
        self._check_procs()
        self._check_open_loop()
        return self

    def _check_open_loop(self) -> None:
        engine = engines.get(self.engine)
        if self.rate is not None and not engine.supports(engines.OPEN):
            raise UnsupportedLoadModel(engine.refusal)
        if self.rate is not None:
            _require(
                _finite(self.rate) and 0 < self.rate <= MAX_RATE,
                "rate must be more than 0 and at most %g requests/s (got %r)" % (MAX_RATE, self.rate),
            )
        _require(self.arrival in ARRIVALS, "arrival must be one of %s (got %r)" % (", ".join(ARRIVALS), self.arrival))
        _require(_is_int(self.seed), "seed must be an integer (got %r)" % (self.seed,))
        _require(
            _is_int(self.streams) and _is_int(self.stream) and 0 <= self.stream < self.streams,
            "stream must be between 0 and streams - 1 (got %r of %r)" % (self.stream, self.streams),
        )

    def _check_length(self) -> None:
        if self.requests is None:
            _require(
                self.duration_s is not None and _finite(self.duration_s) and self.duration_s > 0,
                "duration_s must be more than 0 seconds (got %r), or give requests instead" % (self.duration_s,),
            )
            return
        _require(
            self.duration_s is None,
            "give either duration_s or requests, not both (set duration_s=None to use requests)",
        )
        _require(
            _is_int(self.requests) and self.requests >= 1, "requests must be at least 1 (got %r)" % (self.requests,)
        )

    def _check_procs(self) -> None:
        _require(
            _is_int(self.client_procs) and 1 <= self.client_procs <= MAX_CLIENT_PROCS,
            "client_procs must be between 1 and %d (got %r)" % (MAX_CLIENT_PROCS, self.client_procs),
        )
        if self.client_procs == 1:
            return
        _require(
            self.engine == "asyncio", "client_procs > 1 needs the asyncio engine (the threads engine is one process)"
        )
        _require(
            self.concurrency >= self.client_procs,
            "concurrency (%d) must be at least client_procs (%d): each process needs a connection"
            % (self.concurrency, self.client_procs),
        )
        if self.requests is not None:
            _require(
                self.requests >= self.client_procs,
                "requests (%d) must be at least client_procs (%d)" % (self.requests, self.client_procs),
            )

    def share(self, parts: int) -> list[Workload]:
        """Split concurrency, `requests` and the open-loop schedule as evenly as possible into
        `parts` one-process workloads whose sum is this workload."""
        shares = _split(self.concurrency, parts)
        requests = _split(self.requests, parts) if self.requests is not None else [None] * parts
        return [
            replace(self, concurrency=c, requests=r, client_procs=1, stream=i, streams=parts)
            for i, (c, r) in enumerate(zip(shares, requests, strict=True))
        ]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise WorkloadError(message)
