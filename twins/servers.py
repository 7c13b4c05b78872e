"""One Strategy class per production twin: gunicorn (sync, gthread, gevent) and uvicorn.

Each `serve` starts the real server as a child process on the listener the harness bound (see
`twins.child`), hands it the App's work defaults (see `twins.adapters`), waits until the server
process is asked to stop, and stops the child within a bound.

`--workers` means what it means to gunicorn and uvicorn: worker *processes*. What each process
runs inside is fixed per class (and named in its summary), so a result records the whole
shape. The defaults match the home workloads of the built-ins they are compared with:

    gunicorn-sync          2 processes                 vs prefork / scm-rights
    gunicorn-gthread       2 processes x 16 threads    vs threads (32 threads)
    gunicorn-gthread-1x32  1 process x 32 threads      vs threads, in one process as threads is
    gunicorn-gevent        1 process x 1000 greenlets  vs gevent
    uvicorn                2 processes, one loop each  vs asyncio-executor / reuseport

Without gunicorn (or uvicorn) installed, the classes still import, `unavailable()` says what
to install, and instantiating one raises StrategyError with that sentence.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import List, Optional, Tuple

from harness.server import log
from harness.server.app import App
from harness.server.strategy import ServeOptions, Strategy, StrategyError

from . import child
from .adapters import work_env

EXTRA_HINT = "install the twins extra: pip install 'hangbench[twins]'"
GUNICORN_CONF = str(Path(__file__).with_name("gunicorn_conf.py"))
MAX_SLEEP_S = 60  # harness.server.app.MAX_SLEEP_MS: the longest request a worker may legitimately run


class Twin(Strategy):
    """A production server run as a child process; subclasses say which and how."""

    abstract = True
    requires: Tuple[str, ...] = ()  # importable modules the twin needs

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this twin cannot run here (a missing dependency), or None."""
        missing = [name for name in cls.requires if importlib.util.find_spec(name) is None]
        if missing:
            return "%s needs %s; %s" % (cls.name, " and ".join(missing), EXTRA_HINT)
        return None

    def __init__(self) -> None:
        reason = self.unavailable()
        if reason:
            raise StrategyError(reason)

    def command(self, fd: int, options: ServeOptions) -> List[str]:
        """The child's argv after the interpreter: serve on inherited socket `fd`."""
        raise NotImplementedError

    def describe(self, options: ServeOptions) -> str:
        """The shape this run has, for the server log (a result records name and --workers)."""
        return "%d processes" % options.workers

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        fd = listener.fileno()
        argv = self.command(fd, options)
        process = child.start(argv, fd, child.child_env(work_env(app)))
        log.get().info("{} twin: {} (pid {}): {}", self.name, self.describe(options), process.pid, " ".join(argv))
        try:
            child.wait_until_stopped(process, self.wait_for_stop)
        finally:
            child.stop(process)


class _Gunicorn(Twin):
    abstract = True
    requires: Tuple[str, ...] = ("gunicorn",)
    worker_class = "sync"
    threads = 1
    connections = 1000  # gunicorn's --worker-connections (its default): gevent's greenlets, gthread's cap

    def describe(self, options: ServeOptions) -> str:
        inside = {"gthread": "%d threads" % self.threads, "gevent": "%d greenlets" % self.connections}
        return "gunicorn %s, %d processes x %s" % (
            self.worker_class,
            options.workers,
            inside.get(self.worker_class, "1 request at a time"),
        )

    def command(self, fd: int, options: ServeOptions) -> List[str]:
        argv = ["-m", "gunicorn", "--bind", "fd://%d" % fd, "--worker-class", self.worker_class]
        argv += ["--workers", str(options.workers), "--threads", str(self.threads)]
        argv += ["--worker-connections", str(self.connections)]
        argv += [
            "--keep-alive",
            str(max(1, round(options.idle_timeout_s))),
            "--graceful-timeout",
            str(child.GRACE_S),
            # The heartbeat timeout kills a worker busy for longer: allow the longest sleep.
            "--timeout",
            str(MAX_SLEEP_S + 30),
            "--log-level",
            "warning",
            "--config",
            GUNICORN_CONF,  # never a gunicorn.conf.py that happens to be in the working directory
            "twins.adapters:wsgi_app()",
        ]
        return argv


class GunicornSync(_Gunicorn):
    name = "gunicorn-sync"
    summary = "twin: gunicorn sync workers, pre-forked, blocking accept() on one shared listener, no keep-alive"
    default_workers = 2


class GunicornGthread(_Gunicorn):
    name = "gunicorn-gthread"
    summary = "twin: gunicorn gthread workers, --workers processes x 16 threads behind a selector"
    default_workers = 2
    worker_class = "gthread"
    threads = 16


class GunicornGthread1x32(_Gunicorn):
    name = "gunicorn-gthread-1x32"
    summary = "twin: gunicorn gthread workers, --workers processes x 32 threads (default one process)"
    default_workers = 1
    worker_class = "gthread"
    threads = 32


class GunicornGevent(_Gunicorn):
    name = "gunicorn-gevent"
    summary = "twin: gunicorn gevent workers, --workers processes x 1000 greenlets (monkey-patched)"
    requires = ("gunicorn", "gevent")
    default_workers = 1
    worker_class = "gevent"


class Uvicorn(Twin):
    name = "uvicorn"
    summary = "twin: uvicorn, --workers processes with one event loop each (uvloop, httptools when installed)"
    requires = ("uvicorn",)
    default_workers = 2

    def describe(self, options: ServeOptions) -> str:
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
        return "uvicorn, %d processes, loop %s, http %s" % (options.workers, loop, http)

    def command(self, fd: int, options: ServeOptions) -> List[str]:
        return [
            "-m",
            "twins.uvicorn_fd",  # uvicorn's CLI, with --fd opened as the TCP socket it is
            "--fd",
            str(fd),
            "--workers",
            str(options.workers),
            "--backlog",
            str(options.backlog),
            "--timeout-keep-alive",
            str(max(1, round(options.idle_timeout_s))),
            "--timeout-graceful-shutdown",
            str(child.GRACE_S),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "--factory",
            "twins.adapters:asgi_app",
        ]


__all__ = ["GunicornGevent", "GunicornGthread", "GunicornGthread1x32", "GunicornSync", "Twin", "Uvicorn"]
