"""The Strategy contract, the name -> class registry, and plugin discovery.

A strategy is one small class: a name, a one-line summary, an optional `broken` reason, and
`serve(listener, app, options)`. The built-ins are registered through the entry-point group
`harness.strategies` exactly as third-party plugins are (the pytest/pluggy and locust model),
and a plugin can also be named directly as `package.module:Class` or `path/to/file.py`.

Discovery never raises for a broken plugin: it is listed with its error (`LoadError`) while the
others keep working. Only asking to *use* a broken or unknown strategy is an error.

Server-side module: standard library only, importable from Python 3.8 up.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type, Union

from .app import App

ENTRY_POINT_GROUP = "harness.strategies"
START_METHODS = ("fork", "spawn", "forkserver")

# The built-ins, also declared as entry points in pyproject.toml. Kept here as well so that the
# server side works from a source tree that is not installed (another interpreter, PYTHONPATH).
BUILTINS: Dict[str, str] = {
    "pool-socket": "strategies.pool_socket:PoolSocket",
    "pool-fromfd": "strategies.pool_fromfd:PoolFromFd",
    "scm-rights": "strategies.scm_rights:ScmRights",
    "threads": "strategies.threads:Threads",
    "gevent": "strategies.gevent_server:GeventServer",
    "asyncio-executor": "strategies.asyncio_executor:AsyncioExecutor",
}


class StrategyError(Exception):
    """A strategy cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ServeOptions:
    workers: int = 16
    start_method: str = "fork"
    backlog: int = 128
    executor: str = "process"  # asyncio-executor only: "process" or "thread"
    idle_timeout_s: float = 30.0  # keep-alive connections idle longer than this are closed
    io_timeout_s: float = 30.0  # bound on any one blocking socket operation

    def check(self) -> ServeOptions:
        if self.workers < 1:
            raise StrategyError("--workers must be at least 1 (got %d)" % self.workers)
        if self.start_method not in START_METHODS:
            raise StrategyError(
                "--start-method must be one of %s (got %r)" % (", ".join(START_METHODS), self.start_method)
            )
        if self.backlog < 1:
            raise StrategyError("--backlog must be at least 1 (got %d)" % self.backlog)
        if self.executor not in ("process", "thread"):
            raise StrategyError("--executor must be 'process' or 'thread' (got %r)" % self.executor)
        return self


class Strategy:
    """Base class. Subclasses set the class attributes and implement `serve`.

    `serve` runs in the server process's main thread and returns only when asked to stop. The
    server process turns SIGTERM/SIGINT into `ServerStop` raised in the main thread (it
    interrupts a blocking accept()); a strategy that runs an event loop may instead install its
    own handlers for those signals. Either way, `serve` must end its workers before returning.
    """

    name: str = ""
    summary: str = ""
    broken: Optional[str] = None  # why this strategy is expected to misbehave, or None
    uses_multiprocessing: bool = False  # True: runs once per --start-method in a benchmark
    default_workers: int = 16  # --workers when not given: processes, threads or greenlets

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        raise NotImplementedError


class ServerStop(BaseException):
    """Raised in the server's main thread when it is asked to stop (SIGTERM, SIGINT).

    A BaseException so that strategies faithful to code with `except Exception:` around their
    accept loop (as the article's server has) still stop.
    """


@dataclass(frozen=True)
class Entry:
    """One row of the registry: a loaded strategy class or the reason it failed to load."""

    name: str
    source: str  # "builtin", "entry point", "plugin"
    spec: str  # "module:Class" or a file path
    cls: Optional[Type[Strategy]] = None
    error: Optional[str] = None


def load_spec(spec: str) -> Type[Strategy]:
    """Load `package.module:Class`, `path/to/file.py[:Class]` or `package.module` (one Strategy)."""
    target, _, attr = spec.partition(":")
    if target.endswith(".py") or "/" in target:
        module = _import_file(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:
            raise StrategyError("cannot import plugin module %r: %s: %s" % (target, type(error).__name__, error))
    if attr:
        cls = getattr(module, attr, None)
        if cls is None:
            raise StrategyError("plugin module %r has no attribute %r" % (target, attr))
    else:
        found = [obj for obj in vars(module).values() if _is_strategy_class(obj) and obj.__module__ == module.__name__]
        if len(found) != 1:
            raise StrategyError(
                "plugin %r defines %d Strategy subclasses; name one as %s:ClassName" % (spec, len(found), target)
            )
        cls = found[0]
    if not _is_strategy_class(cls):
        raise StrategyError("%s is not a subclass of harness.server.strategy.Strategy" % spec)
    if not cls.name:
        raise StrategyError("%s has no `name` attribute" % spec)
    return cls


def _is_strategy_class(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, Strategy) and obj is not Strategy


def _import_file(path: Path):
    if not path.is_file():
        raise StrategyError("plugin file %s does not exist" % path)
    module_name = "hangbench_plugin_" + path.stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StrategyError("cannot load plugin file %s" % path)
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so that pickling by reference (spawn, forkserver) can find it.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise StrategyError("cannot import plugin file %s: %s: %s" % (path, type(error).__name__, error))
    return module


def _entry_points() -> List[Tuple[str, str]]:
    try:
        from importlib.metadata import entry_points
    except ImportError:  # pragma: no cover - Python < 3.8
        return []
    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)  # Python >= 3.10
    except TypeError:  # pragma: no cover - Python 3.8/3.9
        eps = entry_points().get(ENTRY_POINT_GROUP, [])  # type: ignore[attr-defined]
    return [(ep.name, ep.value) for ep in eps]


def _entry(name: str, source: str, spec: str) -> Entry:
    try:
        cls = load_spec(spec)
    except StrategyError as error:
        return Entry(name, source, spec, error=str(error))
    return Entry(cls.name, source, spec, cls=cls)


def discover(plugins: Union[List[str], Tuple[str, ...]] = ()) -> Dict[str, Entry]:
    """Every strategy: built-ins, entry points, then `plugins` (later ones win on a clash)."""
    registry: Dict[str, Entry] = {}
    seen_specs = set()
    for name, spec in BUILTINS.items():
        registry[name] = _entry(name, "builtin", spec)
        seen_specs.add(spec)
    for name, spec in _entry_points():
        if spec not in seen_specs:
            registry[name] = _entry(name, "entry point", spec)
            seen_specs.add(spec)
    for spec in plugins:
        entry = _entry(spec, "plugin", spec)
        registry[entry.name] = entry
    return registry


def resolve(name: str, registry: Dict[str, Entry]) -> Entry:
    """The entry named `name`, or a StrategyError suggesting the nearest names."""
    entry = registry.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
        hint = (" Did you mean %s?" % " or ".join(repr(c) for c in close)) if close else ""
        raise StrategyError("unknown strategy %r.%s Run `python -m harness list` to see them all." % (name, hint))
    if entry.error:
        raise StrategyError("strategy %r cannot be loaded: %s" % (name, entry.error))
    return entry
