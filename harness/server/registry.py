"""The name -> strategy class registry and plugin discovery.

The built-ins are registered through the entry-point group `harness.strategies` exactly as
third-party plugins are (the pytest/pluggy and locust model), and a plugin can also be named
directly as `package.module:Class` or `path/to/file.py`.

Rules, each so that a user is never left guessing:
- one name: a strategy is registered under its class's `name`; an entry point registered under
  another name is noted (`Entry.note`), and asking for that other name says which to use;
- a plugin may not silently replace a built-in of the same name (it is refused, listed with the
  reason) unless its class sets `overrides_builtin = True`;
- discovery never raises for a broken plugin: it is listed with its error (`Entry.error`), and
  asking for a strategy that is not found names the plugins that failed to load;
- a plugin import that blocks is bounded (HANGBENCH_PLUGIN_IMPORT_TIMEOUT seconds, default
  10): it runs in a daemon thread that is abandoned past the bound. A thread rather than a
  subprocess because every caller (list, the run's plan, the server) needs the class itself in
  process, and an import in a subprocess would have to be repeated in process anyway; rather
  than SIGALRM because that would clash with other alarm users (pytest-timeout) and works only in
  the main thread. The price, only when a plugin does block: its import goes on in the
  background. Built-ins are imported directly.

Server-side module: standard library only, importable from Python 3.8 up.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union, cast

from .base import Strategy, StrategyError

ENTRY_POINT_GROUP = "harness.strategies"
IMPORT_TIMEOUT_ENV = "HANGBENCH_PLUGIN_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT_S = 10.0

# The built-ins, also declared as entry points in pyproject.toml. Kept here as well so that the
# server side works from a source tree that is not installed (another interpreter, PYTHONPATH).
BUILTINS: Dict[str, str] = {
    "pool-socket": "strategies.pool_socket:PoolSocket",
    "pool-fromfd": "strategies.pool_fromfd:PoolFromFd",
    "scm-rights": "strategies.scm_rights:ScmRights",
    "threads": "strategies.threads:Threads",
    "gevent": "strategies.gevent_server:GeventServer",
    "asyncio-executor": "strategies.asyncio_executor:AsyncioExecutor",
    "asyncio": "strategies.asyncio_inline:AsyncioInline",
    "reuseport": "strategies.reuseport:ReusePort",
    "prefork-accept": "strategies.prefork_accept:PreforkAccept",
    "thread-per-conn": "strategies.thread_per_conn:ThreadPerConn",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One row of the registry: a loaded strategy class or the reason it failed to load."""

    name: str  # the class's `name`; for a failed load, the entry-point name or the spec
    source: str  # "builtin", "entry point", "plugin"
    spec: str  # "module:Class" or a file path
    cls: Optional[Type[Strategy]] = None
    error: Optional[str] = None
    registered_as: Optional[str] = None  # an entry point's own name, when it is not `name`
    unavailable: Optional[str] = None  # why it cannot run here (Strategy.unavailable), if it cannot

    @property
    def note(self) -> Optional[str]:
        if self.registered_as and self.registered_as != self.name:
            return "entry point %r names it %r" % (self.registered_as, self.name)
        return None


def import_timeout_s() -> float:
    try:
        value = float(os.environ.get(IMPORT_TIMEOUT_ENV, DEFAULT_IMPORT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_IMPORT_TIMEOUT_S
    return value if value > 0 else DEFAULT_IMPORT_TIMEOUT_S


def load_spec(spec: str, timeout_s: Optional[float] = None) -> Type[Strategy]:
    """Load `package.module:Class`, `path/to/file.py[:Class]` or `package.module` (one Strategy).

    With `timeout_s`, an import that has not finished by then is a StrategyError."""
    target, _, attr = spec.partition(":")
    if target.endswith(".py") or "/" in target:
        module = _bounded(lambda: _import_file(Path(target)), timeout_s, spec)
    else:
        module = _bounded(lambda: _import_module(target), timeout_s, spec)
    if attr:
        cls = getattr(module, attr, None)
        if cls is None:
            raise StrategyError("plugin module %r has no attribute %r" % (target, attr))
    else:
        found = [obj for obj in vars(module).values() if _is_concrete(obj) and obj.__module__ == module.__name__]
        if len(found) != 1:
            raise StrategyError(
                "plugin %r defines %d concrete Strategy subclasses; name one as %s:ClassName"
                % (spec, len(found), target)
            )
        cls = found[0]
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise StrategyError("%s is not a subclass of harness.server.strategy.Strategy" % spec)
    if not _is_concrete(cls):
        raise StrategyError("%s is an abstract strategy (abstract = True); name a concrete one" % spec)
    return cls


def _is_concrete(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, Strategy) and not vars(obj).get("abstract", False)


def _bounded(load: Callable[[], T], timeout_s: Optional[float], spec: str) -> T:
    if timeout_s is None:
        return load()
    result: List[Any] = []

    def target() -> None:
        try:
            result.append((True, load()))
        except BaseException as error:  # handed to the caller's thread, raised there
            result.append((False, error))

    thread = threading.Thread(target=target, name="hangbench-plugin-import", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not result:
        raise StrategyError(
            "importing plugin %s did not finish within %gs (does it block at import?)" % (spec, timeout_s)
        )
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _import_module(target: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except (Exception, SystemExit) as error:  # sys.exit() at import must not end the harness
        raise StrategyError("cannot import plugin module %r: %s: %s" % (target, type(error).__name__, error)) from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise StrategyError("plugin file %s %s" % (path, "is not a file" if path.exists() else "does not exist"))
    module_name = "hangbench_plugin_" + path.stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StrategyError("cannot load plugin file %s" % path)
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so that pickling by reference (spawn, forkserver) can find it.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # sys.exit() at import must not end the harness
        del sys.modules[module_name]
        raise StrategyError("cannot import plugin file %s: %s: %s" % (path, type(error).__name__, error)) from None
    return module


def _entry_points() -> List[Tuple[str, str]]:
    try:
        from importlib.metadata import entry_points
    except ImportError:  # pragma: no cover - Python < 3.8
        return []
    try:
        eps: Any = entry_points(group=ENTRY_POINT_GROUP)  # Python >= 3.10
    except TypeError:  # pragma: no cover - Python 3.8/3.9
        eps = cast(Any, entry_points()).get(ENTRY_POINT_GROUP, [])
    return [(ep.name, ep.value) for ep in eps]


def _entry(name: str, source: str, spec: str) -> Entry:
    timeout = None if source == "builtin" else import_timeout_s()
    try:
        cls = load_spec(spec, timeout)
    except StrategyError as error:
        return Entry(name, source, spec, error=str(error))
    registered_as = name if source == "entry point" else None
    return Entry(cls.name, source, spec, cls=cls, registered_as=registered_as, unavailable=cls.unavailable())


def discover(plugins: Union[List[str], Tuple[str, ...]] = ()) -> Dict[str, Entry]:
    """Every strategy: built-ins, entry points, then `plugins` (later plugins win over earlier)."""
    registry: Dict[str, Entry] = {}
    seen_specs = set()
    for name, spec in BUILTINS.items():
        registry[name] = _entry(name, "builtin", spec)
        seen_specs.add(spec)
    found = [_entry(name, "entry point", spec) for name, spec in _entry_points() if spec not in seen_specs]
    found += [_entry(spec, "plugin", spec) for spec in plugins]
    for entry in found:
        _add(registry, entry)
    return registry


def _add(registry: Dict[str, Entry], entry: Entry) -> None:
    builtin = registry.get(entry.name)
    clash = entry.cls is not None and builtin is not None and builtin.source == "builtin"
    if clash and entry.cls is not None and not entry.cls.overrides_builtin:
        refused = (
            "its class is named %r like a built-in strategy; rename it, or set overrides_builtin = True" % entry.name
        )
        key = entry.registered_as or entry.spec
        registry[key] = Entry(key, entry.source, entry.spec, error=refused, registered_as=entry.registered_as)
        return
    registry[entry.name] = entry


def resolve(name: str, registry: Dict[str, Entry]) -> Entry:
    """The entry named `name`, or a StrategyError saying why not (nearest names, failed plugins)."""
    entry = registry.get(name)
    if entry is None:
        raise StrategyError(_not_found(name, registry))
    if entry.error:
        raise StrategyError("strategy %r cannot be loaded: %s" % (name, entry.error))
    if entry.unavailable:
        raise StrategyError("strategy %r cannot run here: %s" % (name, entry.unavailable))
    return entry


def _not_found(name: str, registry: Dict[str, Entry]) -> str:
    aliased = [e for e in registry.values() if e.registered_as == name and e.cls is not None]
    if aliased:
        return "strategy %r is registered as an entry point but its class is named %r; use --strategy %s" % (
            name,
            aliased[0].name,
            aliased[0].name,
        )
    close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
    hint = (" Did you mean %s?" % " or ".join(repr(c) for c in close)) if close else ""
    failed = [e for e in registry.values() if e.error]
    if failed:
        hint += " It may be in a plugin that failed to load: %s." % "; ".join(
            "%s (%s)" % (e.name, e.error) for e in failed
        )
    return "unknown strategy %r.%s Run `python -m harness list` to see them all." % (name, hint)
