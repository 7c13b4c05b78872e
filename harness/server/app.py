"""The common handler: a plain synchronous function from Request to Response.

Every strategy runs exactly this function; only *where* it runs differs (pool worker, thread,
greenlet, executor). The request target chooses the work, so one server serves any workload:

    GET /work?cpu_us=200&sleep_ms=5&bytes=1024   burn ~200 us of CPU, sleep 5 ms, answer 1024 bytes
    GET /                                        a small fixed body

Query parameters that are absent (or blank) fall back to the server-wide defaults (`--cpu-us`,
`--sleep-ms`, `--bytes`), so plain clients such as ab or wrk can exercise a workload too. Their
values are plain decimal numbers, each parameter given once: anything else is a 400.
`App` is a small frozen dataclass so it pickles cheaply into pool workers under any start
method. It also carries the `Limits` every connection is held to (a header-read deadline and a
connection cap), because the App is the one object every strategy hands to its sessions.

Work for a client that has gone can be abandoned: a session passes `cancelled`, a check that
the peer has closed, and the CPU burn and the sleep consult it between slices, raising
`ClientGone`. Without `cancelled` the work is exactly as asked.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, TypeVar
from urllib.parse import parse_qsl, urlsplit

from .protocol import Request, Response

# Upper bounds keep a typo in a URL from pinning a worker for hours.
MAX_CPU_US = 10_000_000
MAX_SLEEP_MS = 60_000.0
MAX_BYTES = 64 * 1024 * 1024
MAX_CONNECTIONS = 1_000_000  # per accepting loop; far beyond any fd limit, so only a typo is refused
# Query numbers are plain decimals: int() and float() would also take "1_000", " 5", "1e3", "nan".
# A leading minus is let through so that a negative value is told its bounds (Work.validated).
_INTEGER = re.compile(r"-?[0-9]{1,18}\Z")
_DECIMAL = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?\Z")
INDEX_BODY = b"hangbench: GET /work?cpu_us=N&sleep_ms=N&bytes=N\n"
INDEX_RESPONSE = Response(200, INDEX_BODY)
# How often long work looks whether its client is still there: shorter work never looks.
CANCEL_CHECK_S = 0.1
CANCEL_CHECK_CPU_NS = 50_000_000

N = TypeVar("N", int, float)
Cancelled = Callable[[], bool]  # True once the client has gone: the work may stop


class ClientGone(Exception):
    """The work was abandoned because its client closed the connection."""


class BadLimits(ValueError):
    """Connection limits that cannot be enforced (a user error: exit 2)."""


@dataclass(frozen=True)
class Limits:
    """What one client connection may hold of a server, enforced by every session and reactor.

    - `head_timeout_s`: a request head (request line and headers) must be complete within this
      many seconds of the connection's accept, or of the first byte of a later keep-alive
      request (between requests the idle timeout applies). Past it the connection gets a 408
      if some bytes of a head had arrived, and is closed without a word if none had.
    - `max_connections`: connections one accepting loop holds at once. Past it the loop stops
      accepting, so new connections wait in the listen backlog (and beyond it, in the
      client's SYN retries): the wait shows up as connect latency in the client's figures,
      which is what a saturated server really costs, instead of fast errors that would flatter it.
    """

    head_timeout_s: float = 10.0
    max_connections: int = 1000

    def validated(self) -> Limits:
        if not 0 < self.head_timeout_s < float("inf"):
            raise BadLimits("the header-read timeout must be a positive number of seconds")
        if not 1 <= self.max_connections <= MAX_CONNECTIONS:
            raise BadLimits(
                "the connection cap must be between 1 and %d (got %d)" % (MAX_CONNECTIONS, self.max_connections)
            )
        return self


class BadWork(ValueError):
    """A /work query the handler refuses; answered with 400."""


@dataclass(frozen=True)
class Work:
    cpu_us: int = 0
    sleep_ms: float = 0.0
    bytes: int = 64

    def validated(self) -> Work:
        if not 0 <= self.cpu_us <= MAX_CPU_US:
            raise BadWork("cpu_us must be between 0 and %d" % MAX_CPU_US)
        if not 0 <= self.sleep_ms <= MAX_SLEEP_MS:
            raise BadWork("sleep_ms must be between 0 and %g" % MAX_SLEEP_MS)
        if not 0 <= self.bytes <= MAX_BYTES:
            raise BadWork("bytes must be between 0 and %d" % MAX_BYTES)
        return self


def burn_cpu(microseconds: int, cancelled: Optional[Cancelled] = None) -> None:
    """Spin until this thread has used `microseconds` of CPU time (not wall time), so that a
    thread waiting for the GIL does not count as working. With `cancelled`, look every
    CANCEL_CHECK_CPU_NS of CPU whether to stop (raising ClientGone)."""
    if microseconds <= 0:
        return
    deadline = time.thread_time_ns() + microseconds * 1000
    if cancelled is None or microseconds * 1000 <= CANCEL_CHECK_CPU_NS:
        # Bounded by MAX_CPU_US through Work.validated().
        while time.thread_time_ns() < deadline:
            pass
        return
    for _ in range(MAX_CPU_US * 1000 // CANCEL_CHECK_CPU_NS + 2):  # bounded: each round burns a slice
        now = time.thread_time_ns()
        if now >= deadline:
            return
        step = min(deadline, now + CANCEL_CHECK_CPU_NS)
        while time.thread_time_ns() < step:
            pass
        if time.thread_time_ns() < deadline and cancelled():
            raise ClientGone("client gone during CPU work")


def sleep(seconds: float, cancelled: Optional[Cancelled] = None) -> None:
    """`time.sleep(seconds)`; with `cancelled`, in CANCEL_CHECK_S slices, raising ClientGone
    as soon as the client has gone. A sleep of one slice or less is one plain sleep."""
    if cancelled is None or seconds <= CANCEL_CHECK_S:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    for _ in range(int(MAX_SLEEP_MS / 1000.0 / CANCEL_CHECK_S) + 2):  # bounded by MAX_SLEEP_MS
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, CANCEL_CHECK_S))
        if time.monotonic() < end and cancelled():
            raise ClientGone("client gone during a sleep")


_BODY_CHUNK = b"x" * 4096


def make_body(size: int) -> bytes:
    repeats, rest = divmod(size, len(_BODY_CHUNK))
    return _BODY_CHUNK * repeats + _BODY_CHUNK[:rest]


# Responses kept between requests: a 200's body is a function of its size alone, so at most
# MAX_KEPT of them (of at most MAX_KEPT_BODY bytes) are kept, immutable, and a full table is
# emptied, not grown. What a request asks for is still parsed every time (its head and query):
# memoising those by their bytes would make a benchmark's repeated request nearly free, which
# real traffic is not.
MAX_KEPT = 64
MAX_KEPT_BODY = 16 * 1024
_responses: Dict[int, Response] = {}


def ok_response(size: int) -> Response:
    """200 with a body of `size` bytes; one shared (immutable) Response per small size."""
    response = _responses.get(size)
    if response is None:
        response = Response(200, make_body(size))
        if size <= MAX_KEPT_BODY:
            if len(_responses) >= MAX_KEPT:
                _responses.clear()
            _responses[size] = response
    return response


@dataclass(frozen=True)
class App:
    defaults: Work = Work()
    limits: Limits = Limits()

    def __call__(self, request: Request, cancelled: Optional[Cancelled] = None) -> Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return Response(405, b"method not allowed\n", extra_headers=(("Allow", "GET, HEAD, POST"),))
        parts = urlsplit(request.target)  # cached by urllib for a repeated target
        if parts.path == "/":
            return INDEX_RESPONSE  # immutable: one for every request
        if parts.path != "/work":
            return Response(404, b"not found; try /work?cpu_us=200&sleep_ms=5&bytes=1024\n")
        try:
            work = self.parse_work(parts.query)
        except BadWork as error:
            return Response(400, (str(error) + "\n").encode())
        if cancelled is None:  # subclasses may override perform(work) alone
            return self.perform(work)
        return self.perform(work, cancelled)

    def parse_work(self, query: str) -> Work:
        params: Dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in params:  # which of two values was meant is a guess; a client bug is better told
                raise BadWork("%s is given twice; give each parameter once" % key)
            params[key] = value
        defaults = self.defaults
        return Work(
            cpu_us=_number(params, "cpu_us", defaults.cpu_us, _INTEGER, int),
            sleep_ms=_number(params, "sleep_ms", defaults.sleep_ms, _DECIMAL, float),
            bytes=_number(params, "bytes", defaults.bytes, _INTEGER, int),
        ).validated()

    @staticmethod
    def perform(work: Work, cancelled: Optional[Cancelled] = None) -> Response:
        burn_cpu(work.cpu_us, cancelled)
        if work.sleep_ms > 0:
            sleep(work.sleep_ms / 1000.0, cancelled)
        return ok_response(work.bytes)


def _number(params: Dict[str, str], key: str, default: N, pattern: re.Pattern[str], kind: Callable[[str], N]) -> N:
    """A query parameter as a plain decimal number (blank or absent: the default), or BadWork."""
    text = params.get(key, "")
    if not text:
        return default
    if not pattern.match(text):
        raise BadWork("cpu_us, sleep_ms and bytes must be plain decimal numbers (got %s=%r)" % (key, text[:40]))
    return kind(text)


def handle(app: App, request: Request, cancelled: Optional[Cancelled] = None) -> Response:
    """Run the app, turning an unexpected exception into a 500 instead of a dead worker.

    ClientGone (only possible with `cancelled`) is not turned into anything: nobody is left to
    answer, and the caller closes the connection."""
    try:
        if cancelled is None:
            return app(request)
        return app(request, cancelled)
    except ClientGone:
        raise
    except Exception as error:
        return Response(500, ("internal error: %r\n" % (error,)).encode())
