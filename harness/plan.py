"""Turn the run's command line into cases: strategy x start method x interpreter.

Everything a user can get wrong about the cases is checked here, before any server starts, and
reported as a `PlanError` (a `UsageError`: one sentence, exit 2): unknown strategy (with the
nearest names), a strategy named twice, unknown start method, an interpreter that does not
exist or is too old.

A case names its strategy by the spec the server loads (`module:Class` or a file path), not by
its registry name, so that a server under another interpreter, where this environment's entry
points are not installed, still finds it. Such a server gets only this source tree's `harness`
and `strategies` packages on its path (a folder of symlinks), never this environment's
site-packages, whose compiled modules would not load under another Python.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import UsageError
from .server.strategy import START_METHODS, Entry, StrategyError, discover, resolve

MAX_REQUESTS_RUN_S = 300.0  # bound on the measurement of a --requests run
MIN_SERVER_PYTHON = (3, 8)
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class PlanError(UsageError):
    """The command line asks for something that cannot run; the message says what to change."""


@dataclass(frozen=True)
class Case:
    strategy: str
    spec: str
    source: str
    start_method: Optional[str]  # None: the strategy does not use multiprocessing
    python: str  # interpreter path for the server side
    python_version: str
    broken: Optional[str]
    load_error: Optional[str] = None

    @property
    def display(self) -> str:
        parts = [self.strategy]
        if self.start_method:
            parts.append(self.start_method)
        if self.python != sys.executable:
            parts.append("py" + self.python_version)
        return "/".join(parts)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.display)

    def argv(self, server_args: Sequence[str]) -> List[str]:
        argv = [self.python, "-m", "harness.server", "--strategy", self.spec, "--port", "0"]
        argv += list(server_args)
        argv += ["--start-method", self.start_method or "fork"]
        return argv

    def env(self, case_dir: Path) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.python != sys.executable:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_source_tree(case_dir)), env.get("PYTHONPATH", "")]))
        return env


def _source_tree(case_dir: Path) -> Path:
    """A folder holding only links to this tree's server-side packages."""
    tree = case_dir / "pythonpath"
    tree.mkdir(parents=True, exist_ok=True)
    for package in ("harness", "strategies"):
        link = tree / package
        if not link.exists():
            link.symlink_to(_PACKAGE_ROOT / package, target_is_directory=True)
    return tree


def build(args: argparse.Namespace) -> List[Case]:
    methods = _start_methods(args.start_method)
    pythons = _pythons(args.python)
    entries = _select(args.strategy, args.plugin)
    _check_declared(entries, getattr(args, "strategy_option", []))
    cases = []
    for entry in entries:
        uses_mp = bool(entry.cls and entry.cls.uses_multiprocessing)
        for method in methods if uses_mp else [None]:
            _check_options(entry, method, args)
            for path, version in pythons:
                cases.append(_case(entry, method, path, version))
    return cases


def _check_declared(entries: Sequence[Entry], items: Sequence[str]) -> None:
    """A `--strategy-option` that no strategy of the run declares would be ignored by all."""
    from .server.process import check_declared

    classes = [entry.cls for entry in entries if entry.cls is not None and not entry.error]
    if items and classes:
        try:
            check_declared(list(items), classes)
        except StrategyError as error:
            raise PlanError(str(error)) from None


def _check_options(entry: Entry, method: Optional[str], args: argparse.Namespace) -> None:
    """The strategy's own checks of the server options (its worker limit, its declared
    options), here rather than in a server that would fail to start and be blamed for it."""
    if entry.cls is None or entry.error:
        return  # reported by the case itself, as the strategy's failure to load
    from .server.process import options_from

    serve_args = argparse.Namespace(**{**vars(args), "start_method": method or "fork", "port": 0})
    try:
        strategy = entry.cls()
    except Exception:  # a plugin whose constructor fails: its server will say so, as its failure
        return
    try:
        options_from(serve_args, strategy)
    except (StrategyError, ValueError) as error:
        raise PlanError("strategy %s: %s" % (entry.name, error)) from None


def _case(entry: Entry, method: Optional[str], python: str, version: str) -> Case:
    spec = entry.spec
    if spec.endswith(".py") or ("/" in spec.partition(":")[0]):
        spec = str(Path(spec.partition(":")[0]).resolve()) + (":" + spec.partition(":")[2] if ":" in spec else "")
    broken = entry.cls.broken if entry.cls else None
    return Case(entry.name, spec, entry.source, method, python, version, broken, entry.error)


def _select(names: str, plugins: Sequence[str]) -> List[Entry]:
    requested = [n.strip() for n in names.split(",") if n.strip()]
    # `--strategy path/to/file.py` or `module:Class`, as `serve` takes it: loaded as a plugin.
    specs = [n for n in requested if is_spec(n) and n not in plugins]
    if specs:
        from .plugin_probe import probe_plugin

        for spec in specs:
            probe_plugin(spec, "--strategy")
    registry = discover([*plugins, *specs])
    _refuse_failed_plugins(registry, [*plugins, *specs])
    if names.strip() == "all":  # what can run here; `list` says why the others cannot
        runnable = [e for e in registry.values() if not e.unavailable]
        return sorted(runnable, key=lambda e: (e.source != "builtin", e.name))
    by_spec = {e.spec: e.name for e in registry.values() if e.source == "plugin"}
    requested = [by_spec.get(n, n) if is_spec(n) else n for n in requested]
    selected: List[Entry] = []
    for index, name in enumerate(requested):
        if name in requested[:index]:
            raise PlanError("--strategy names %r twice; name each strategy once" % name)
        if name not in registry or registry[name].unavailable:
            try:
                resolve(name, registry)
            except StrategyError as error:
                raise PlanError(str(error)) from None
        selected.append(registry[name])
    if not selected:
        raise PlanError("--strategy needs 'all' or at least one strategy name")
    return selected


def is_spec(name: str) -> bool:
    """A strategy given as `path/to/file.py[:Class]` or `module:Class` rather than by name."""
    return ":" in name or name.partition(":")[0].endswith(".py")


def _refuse_failed_plugins(registry: Dict[str, Entry], specs: Sequence[str]) -> None:
    """A plugin the user named that did not load is refused, selected or not: a run without it
    would look like a run with it."""
    for entry in registry.values():
        if entry.source == "plugin" and entry.error and entry.spec in specs:
            raise PlanError("--plugin %s cannot be loaded: %s" % (entry.spec, entry.error))


def _start_methods(value: str) -> List[str]:
    methods = [m.strip() for m in value.split(",") if m.strip()]
    _once("--start-method", methods)
    bad = [m for m in methods if m not in START_METHODS]
    if bad or not methods:
        raise PlanError(
            "--start-method takes %s or a comma-separated list of them (got %r)" % ("|".join(START_METHODS), value)
        )
    return methods


def _pythons(value: Optional[str]) -> List[Tuple[str, str]]:
    if not value:
        return [(sys.executable, "%d.%d.%d" % sys.version_info[:3])]
    paths = [path.strip() for path in value.split(",") if path.strip()]
    _once("--python", paths)
    found = [_interpreter(path) for path in paths]
    _once("--python", [path for path, _ in found])  # two names of one interpreter (python3, its full path)
    return found


def _once(option: str, items: Sequence[str]) -> None:
    for index, item in enumerate(items):
        if item in items[:index]:
            raise PlanError("%s names %s twice; name each once" % (option, item))


def _interpreter(path: str) -> Tuple[str, str]:
    resolved = path if os.sep in path else (_which(path) or path)
    if not (os.path.isfile(resolved) and os.access(resolved, os.X_OK)):
        raise PlanError("--python %s is not an executable file" % path)
    try:
        out = subprocess.run(
            [resolved, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PlanError("--python %s does not run: %s" % (path, error)) from None
    version = out.stdout.strip()
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if out.returncode != 0 or len(parts) < 2:
        raise PlanError("--python %s is not a Python interpreter" % path)
    if parts < MIN_SERVER_PYTHON:
        raise PlanError(
            "--python %s is Python %s; the server side needs %d.%d or newer" % (path, version, *MIN_SERVER_PYTHON)
        )
    return os.path.abspath(resolved), version


def _which(name: str) -> Optional[str]:
    import shutil

    return shutil.which(name)


def server_args(args: argparse.Namespace) -> List[str]:
    """The `serve` options given to the run, passed on to every server."""
    out = [
        "--host",
        args.host,
        "--backlog",
        str(args.backlog),
        "--executor",
        args.executor,
        "--cpu-us",
        str(args.cpu_us),
        "--sleep-ms",
        str(args.sleep_ms),
        "--bytes",
        str(args.bytes),
        "--idle-timeout",
        str(args.idle_timeout),
        "--head-timeout",
        str(args.head_timeout),
        "--max-connections",
        str(args.max_connections),
    ]
    if args.workers is not None:
        out += ["--workers", str(args.workers)]
    for name in args.emulate:
        out += ["--emulate", name]
    for item in getattr(args, "strategy_option", []):
        out += ["--strategy-option", item]
    return out


def label(cases: Sequence[Case]) -> str:
    names = sorted({case.strategy for case in cases})
    return "all" if len(names) > 3 else "+".join(names)
