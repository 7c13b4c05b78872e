"""The Strategy base class: the contract a strategy fills in and the lifecycle it inherits.

Modelled on gunicorn's `Worker.init_process` -> `run`: the server process calls `Strategy.run`,
which records the listener, the options and the stop event, calls the strategy's `serve`, and
afterwards stops whatever workers the strategy started through the base and is still running.
A strategy therefore writes only its serving loop; it asks the base for N workers running a
function (`start_processes`, `pool`, `process_pool_executor`, `fork`) and the base does what
every worker needs (`init_worker`, fd hygiene under fork, signal masking around fork, a
bounded stop). It learns of a stop through `stopping`, `stop_fd` or `wait_for_stop(timeout)`.

Class attributes are checked when the class is defined (`__init_subclass__`), so a typo such as
`uses_multiprocesing = True` or an empty `summary` fails at import with one sentence instead of
loading silently. `abstract = True` (not inherited) marks an intermediate base class.
Standard library only, Python 3.8+.
"""

from __future__ import annotations

import contextlib
import difflib
import multiprocessing
import re
import socket
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from . import workers as _workers
from .app import App
from .lifecycle import StopEvent, blocked_stop_signals
from .worker import init_worker

START_METHODS = ("fork", "spawn", "forkserver")
MAX_WORKERS = 1024  # a sane cap on processes/threads; gevent's greenlets may go higher (max_workers)
EXECUTOR_START_TIMEOUT_S = 60.0
_CLI_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StrategyError(Exception):
    """A strategy cannot be found, loaded or configured; the message says what to do."""


class StrategyDefinitionError(StrategyError, TypeError):
    """A Strategy subclass is defined wrongly (raised when its class statement runs)."""


@dataclass(frozen=True)
class StrategyOption:
    """An option a strategy declares for itself (`--strategy-option NAME=VALUE`)."""

    name: str
    default: str
    choices: Tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class ServeOptions:
    workers: int = 16
    start_method: str = "fork"
    backlog: int = 128
    idle_timeout_s: float = 30.0  # keep-alive connections idle longer than this are closed
    io_timeout_s: float = 30.0  # bound on any one blocking socket operation
    extra: Mapping[str, str] = field(default_factory=dict)  # strategy options, see StrategyOption

    def check(self, max_workers: int = MAX_WORKERS) -> ServeOptions:
        if not 1 <= self.workers <= max_workers:
            raise StrategyError("--workers must be between 1 and %d (got %d)" % (max_workers, self.workers))
        if self.start_method not in START_METHODS:
            raise StrategyError(
                "--start-method must be one of %s (got %r)" % (", ".join(START_METHODS), self.start_method)
            )
        if not 1 <= self.backlog <= 65535:
            raise StrategyError("--backlog must be between 1 and 65535 (got %d)" % self.backlog)
        for name, value in (("--idle-timeout", self.idle_timeout_s), ("io timeout", self.io_timeout_s)):
            if not 0 < value <= 86400:  # also refuses NaN
                raise StrategyError("%s must be more than 0 and at most 86400 seconds (got %r)" % (name, value))
        return self


# Attribute names a subclass may set; a name close to one of these but not equal is a typo.
_KNOWN = (
    "name",
    "summary",
    "broken",
    "uses_multiprocessing",
    "default_workers",
    "max_workers",
    "interrupt_on_stop",
    "strategy_options",
    "overrides_builtin",
    "abstract",
    "serve",
    "check_options",
    "unavailable",
)
_FINAL = ("run",)  # the lifecycle itself: override `serve`


class Strategy:
    """Base class. Subclasses set the class attributes and implement `serve`."""

    abstract: ClassVar[bool] = True  # not inherited: only this class statement's own value counts
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    broken: ClassVar[Optional[str]] = None  # why this strategy is expected to misbehave, or None
    uses_multiprocessing: ClassVar[bool] = False  # True: runs once per --start-method in a benchmark
    default_workers: ClassVar[int] = 16  # --workers when not given: processes, threads or greenlets
    max_workers: ClassVar[int] = MAX_WORKERS
    # False (the default): a stop sets the flag and wakes `stop_fd`; `serve` returns by itself.
    # True: the stop also raises `ServerStop` (a BaseException) in the main thread, once. Only for
    # code that models a plain blocking `while True: accept()` loop faithfully (the article's).
    interrupt_on_stop: ClassVar[bool] = False
    strategy_options: ClassVar[Tuple[StrategyOption, ...]] = ()
    overrides_builtin: ClassVar[bool] = False  # True: may replace the built-in of the same name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_definition(cls)

    # -- the contract ----------------------------------------------------------------------

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        """Serve until `stopping` (or until ServerStop, with `interrupt_on_stop`); runs in the
        server process's main thread. Workers started through the base are stopped afterwards."""
        raise NotImplementedError

    def check_options(self, options: ServeOptions) -> None:
        """Refuse options this strategy cannot run with (StrategyError, one sentence).

        The base checks the declared `strategy_options`; an override should call it too."""
        declared = {option.name: option for option in self.strategy_options}
        for key, value in options.extra.items():
            option = declared.get(key)
            if option is None:
                # Options reach every strategy of a run; a key for another one is fine, a typo is not.
                close = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.75)
                if close:
                    raise StrategyError("strategy %r has no option %r; did you mean %r?" % (self.name, key, close[0]))
            elif option.choices and value not in option.choices:
                raise StrategyError(
                    "strategy %r option %s must be one of %s (got %r)"
                    % (self.name, key, ", ".join(option.choices), value)
                )

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this strategy cannot run on this machine (a missing optional package, another OS),
        or None. `--strategy all` leaves such a strategy out and `list` says why; naming it is an
        error. Checked without starting anything, so keep it cheap (find_spec, not import)."""
        return None

    def option(self, name: str) -> str:
        """The value of declared option `name` for this run (its default if not given)."""
        [option] = [o for o in self.strategy_options if o.name == name]
        return self.options.extra.get(name, option.default)

    # -- the lifecycle (called by the server process) ----------------------------------------

    def run(self, listener: socket.socket, app: App, options: ServeOptions, stop: Optional[StopEvent] = None) -> None:
        self.listener = listener
        self.app = app
        self.options = options
        self.stop_event = stop if stop is not None else StopEvent()
        self._processes: List[_workers.WorkerProcess] = []
        self._forked: Set[int] = set()
        self._stoppers: List[Callable[[], None]] = []
        try:
            self.serve(listener, app, options)
        finally:
            self.stop_workers()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set

    @property
    def stop_fd(self) -> int:
        """Readable once the stop is asked for: select on it, or give it to your event loop."""
        return self.stop_event.fileno()

    def wait_for_stop(self, timeout: Optional[float]) -> bool:
        """Sleep until the stop is asked for or `timeout` passes; return `stopping`."""
        return self.stop_event.wait(timeout)

    # -- workers ----------------------------------------------------------------------------

    def inherited_fds(self) -> List[int]:
        """What a forked worker must not keep: the listener and the stop pipe (plus channels)."""
        return _workers.inherited_fds(
            self.options.start_method, [self.listener.fileno(), *self.stop_event.fds, *self._channel_fds()]
        )

    def start_processes(
        self, count: int, target: Callable[..., Any], args: Sequence[Any] = (), channel: bool = False
    ) -> List[_workers.WorkerProcess]:
        """Start `count` worker processes running `target(*args)`, or `target(channel, *args)`
        with an AF_UNIX channel each (the parent's end is `WorkerProcess.channel`; EOF on it
        asks the worker to stop). Stopped, bounded, when `serve` returns."""
        close = self.inherited_fds()  # the new workers' own channels are added one by one
        started = _workers.start_processes(self.options.start_method, count, target, args, channel, close)
        self._processes.extend(started)
        return started

    def stop_processes(self, processes: Sequence[_workers.WorkerProcess]) -> None:
        """Stop these workers now (bounded: EOF, SIGTERM, SIGKILL); `serve` may call it early."""
        _workers.stop_processes(processes)
        self._processes = [w for w in self._processes if w not in processes]

    @contextlib.contextmanager
    def pool(self, processes: Optional[int] = None) -> Iterator[Any]:
        """`multiprocessing.Pool(processes)` (default `--workers`), terminated (bounded) on exit."""
        spare = _workers.child_pids()
        pool = _workers.make_pool(self.options.start_method, processes or self.options.workers, self.inherited_fds())
        try:
            yield pool
        finally:
            _workers.stop_pool(pool, spare=spare)

    def process_pool_executor(self, workers: Optional[int] = None) -> ProcessPoolExecutor:
        """A ProcessPoolExecutor whose workers are all started now, before the first accept:
        started later, forked workers would inherit client sockets and the parent's close()
        would then send no FIN. Shut down (bounded, see workers.stop_executor) when `serve` returns."""
        count = workers or self.options.workers
        fork = self.options.start_method == "fork"
        spare = _workers.child_pids()
        context = multiprocessing.get_context(self.options.start_method)
        executor = ProcessPoolExecutor(
            count, mp_context=context, initializer=init_worker, initargs=(self.inherited_fds(),)
        )
        self._stoppers.append(lambda: _workers.stop_executor(executor, spare=spare))
        with blocked_stop_signals(fork):
            started = [executor.submit(_ready) for _ in range(count)]
        wait(started, EXECUTOR_START_TIMEOUT_S)
        return executor

    def fork(self, target: Callable[..., Any], *args: Any) -> int:
        """`os.fork()` a child running `target(*args)` then exiting; reaped by `live_children()`,
        stopped (SIGTERM, grace, SIGKILL) when `serve` returns. OSError if fork fails."""
        pid = _workers.fork_child(target, args, self.inherited_fds())
        self._forked.add(pid)
        return pid

    def live_children(self) -> int:
        """Reap finished `fork()` children without blocking; return how many are alive."""
        return _workers.reap(self._forked)

    def stop_workers(self) -> None:
        """Stop everything started through the base that is still running (bounded)."""
        for stopper in reversed(getattr(self, "_stoppers", [])):
            stopper()
        self._stoppers = []
        _workers.stop_processes(getattr(self, "_processes", []))
        self._processes = []
        _workers.stop_pids(getattr(self, "_forked", set()))

    def _channel_fds(self) -> List[int]:
        return [w.channel.fileno() for w in self._processes if w.channel_or_none is not None]


def _ready() -> None:
    """A no-op task: submitting `workers` of them starts the executor's workers."""


def _check_definition(cls: type) -> None:
    """Refuse a wrongly defined Strategy subclass with one sentence (StrategyDefinitionError)."""
    own: Dict[str, Any] = dict(vars(cls))
    label = "strategy class %s" % cls.__qualname__
    for attr in own:
        if attr in _FINAL:
            raise StrategyDefinitionError(
                "%s overrides %r, which is the base's lifecycle; override serve()" % (label, attr)
            )
        if attr.startswith("_") or attr in _KNOWN:
            continue
        close = difflib.get_close_matches(attr, _KNOWN, n=1, cutoff=0.8)
        if close:
            raise StrategyDefinitionError("%s sets %r: did you mean %r?" % (label, attr, close[0]))
    if own.get("abstract", False):
        return
    problem = _attribute_problem(cls)
    if problem:
        raise StrategyDefinitionError("%s: %s" % (label, problem))


MAX_SUMMARY_CHARS = 300
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _attribute_problem(cls: Any) -> Optional[str]:
    if not isinstance(cls.name, str) or not cls.name:
        return "`name` must be a non-empty string (the name given to --strategy)"
    if not _CLI_NAME.match(cls.name) or cls.name == "all" or cls.name.endswith(".py"):
        return "`name` %r is not a usable strategy name (letters, digits, '-', '_', '.'; not 'all')" % cls.name
    if not isinstance(cls.summary, str) or not cls.summary.strip():
        return "`summary` must be a non-empty one-line description"
    # `list` and the tables print these as they are: a newline or an escape sequence would
    # rewrite the user's terminal, and a 10 kB summary would bury every other row.
    if len(cls.summary) > MAX_SUMMARY_CHARS or _CONTROL_CHARS.search(cls.summary):
        return "`summary` must be one line of at most %d characters without control characters" % MAX_SUMMARY_CHARS
    if cls.broken is not None and (not isinstance(cls.broken, str) or not cls.broken.strip()):
        return "`broken` must be None or a non-empty reason"
    if cls.broken is not None and _CONTROL_CHARS.search(cls.broken):
        return "`broken` must be a reason without control characters (no newline, no escape sequence)"
    for attr in ("uses_multiprocessing", "interrupt_on_stop", "overrides_builtin"):
        if not isinstance(getattr(cls, attr), bool):
            return "`%s` must be True or False" % attr
    if not isinstance(cls.default_workers, int) or not 1 <= cls.default_workers <= cls.max_workers:
        return "`default_workers` must be an int between 1 and max_workers (%d)" % cls.max_workers
    if any(not isinstance(o, StrategyOption) for o in cls.strategy_options):
        return "`strategy_options` must be a tuple of StrategyOption"
    if cls.serve is Strategy.serve:
        return "it does not define serve()"
    return None
