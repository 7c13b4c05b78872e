"""The common handler: a plain synchronous function from Request to Response.

Every strategy runs exactly this function; only *where* it runs differs (pool worker, thread,
greenlet, executor). The request target chooses the work, so one server serves any workload:

    GET /work?cpu_us=200&sleep_ms=5&bytes=1024   burn ~200 us of CPU, sleep 5 ms, answer 1024 bytes
    GET /                                        a small fixed body

Query parameters that are absent fall back to the server-wide defaults (`--cpu-us`,
`--sleep-ms`, `--bytes`), so plain clients such as ab or wrk can exercise a workload too.
`App` is a small frozen dataclass so it pickles cheaply into pool workers under any start
method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional
from urllib.parse import parse_qsl, urlsplit

from .protocol import Request, Response

# Upper bounds keep a typo in a URL from pinning a worker for hours.
MAX_CPU_US = 10_000_000
MAX_SLEEP_MS = 60_000.0
MAX_BYTES = 64 * 1024 * 1024
INDEX_BODY = b"hangbench: GET /work?cpu_us=N&sleep_ms=N&bytes=N\n"


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


def burn_cpu(microseconds: int) -> None:
    """Spin until this thread has used `microseconds` of CPU time (not wall time), so that a
    thread waiting for the GIL does not count as working."""
    if microseconds <= 0:
        return
    deadline = time.thread_time_ns() + microseconds * 1000
    # Bounded by MAX_CPU_US through Work.validated().
    while time.thread_time_ns() < deadline:
        pass


_BODY_CHUNK = b"x" * 4096


def make_body(size: int) -> bytes:
    repeats, rest = divmod(size, len(_BODY_CHUNK))
    return _BODY_CHUNK * repeats + _BODY_CHUNK[:rest]


@dataclass(frozen=True)
class App:
    defaults: Work = Work()

    def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return Response(405, b"method not allowed\n", extra_headers=(("Allow", "GET, HEAD, POST"),))
        parts = urlsplit(request.target)
        if parts.path == "/":
            return Response(200, INDEX_BODY)
        if parts.path != "/work":
            return Response(404, b"not found; try /work?cpu_us=200&sleep_ms=5&bytes=1024\n")
        try:
            work = self.parse_work(parts.query)
        except BadWork as error:
            return Response(400, (str(error) + "\n").encode())
        return self.perform(work)

    def parse_work(self, query: str) -> Work:
        params: Dict[str, str] = dict(parse_qsl(query))
        try:
            return Work(
                cpu_us=int(params.get("cpu_us", self.defaults.cpu_us)),
                sleep_ms=float(params.get("sleep_ms", self.defaults.sleep_ms)),
                bytes=int(params.get("bytes", self.defaults.bytes)),
            ).validated()
        except ValueError as error:
            if isinstance(error, BadWork):
                raise
            raise BadWork("cpu_us, sleep_ms and bytes must be numbers: %s" % error)

    @staticmethod
    def perform(work: Work) -> Response:
        burn_cpu(work.cpu_us)
        if work.sleep_ms > 0:
            time.sleep(work.sleep_ms / 1000.0)
        return Response(200, make_body(work.bytes))


def handle(app: App, request: Optional[Request]) -> Response:
    """Run the app, turning an unexpected exception into a 500 instead of a dead worker."""
    try:
        return app(request)  # type: ignore[arg-type]
    except Exception as error:
        return Response(500, ("internal error: %r\n" % (error,)).encode())
