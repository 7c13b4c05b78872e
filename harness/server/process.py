"""The server process: bind, announce readiness, run one strategy, stop on a signal.

Run as `python -m harness.server ...` (the harness does this, possibly under another
interpreter) or through `python -m harness serve ...`. Standard library only, Python 3.8+.

Order matters here:
1. emulations and the forensics hook are installed before anything starts a worker, so that
   fork children inherit them and spawn/forkserver children get them through the environment;
2. the listening socket is bound and listening *before* the ready line is printed, so that a
   client that reads the line can connect at once (the kernel queues it in the backlog);
3. every option is checked (common ranges, then the strategy's own `check_options`) before
   anything is bound: a user's mistake is one sentence and exit 2;
4. SIGTERM and SIGINT set the stop flag and wake the stop fd (`lifecycle.py`); for strategies
   with `interrupt_on_stop` (plain `while True: accept()` code) they also raise `ServerStop` in
   the main thread, which interrupts a blocking accept().

The ready line is one JSON object on stdout: {"event": "listening", "host", "port", "pid", ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import sys
from typing import Dict, List, Optional, Type

from . import log, watchdog
from .app import App, Limits, Work
from .lifecycle import StopEvent, install_stop_handlers
from .registry import import_timeout_s
from .strategy import START_METHODS, ServeOptions, ServerStop, Strategy, StrategyError, discover, load_spec, resolve

READY_EVENT = "listening"
EXIT_BOUND_S = 5.0  # from the end of serve() to the end of the process


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="python -m harness.server", description="Run one strategy as an HTTP/1.1 server."
    )
    parser.add_argument(
        "--strategy", required=True, help="strategy name (see `python -m harness list`) or module:Class"
    )
    add_server_options(parser)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("HANGBENCH_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser


def add_server_options(parser: argparse.ArgumentParser, multi: bool = False) -> None:
    """Options shared by `serve` and the benchmark run (which passes them through).

    With `multi`, --start-method takes a comma-separated list (the benchmark runs each)."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="SPEC",
        help="load a strategy from package.module:Class or path/to/file.py (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 = any free port (default)")
    parser.add_argument("--backlog", type=int, default=128, help="listen backlog (default 128)")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes/threads the strategy uses (default: the strategy's own)"
    )
    start_help = "multiprocessing start method%s, set explicitly wherever multiprocessing is used (default fork)" % (
        " list" if multi else ""
    )
    parser.add_argument("--start-method", default="fork", help=start_help, metavar="|".join(START_METHODS))
    parser.add_argument(
        "--strategy-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option the strategy declares for itself (see `python -m harness list`; repeatable)",
    )
    parser.add_argument(
        "--executor",
        default="process",
        choices=["process", "thread"],
        help="short for --strategy-option executor=... (asyncio-executor: where the handler runs; default process)",
    )
    parser.add_argument("--cpu-us", type=int, default=0, help="default CPU work per request, microseconds")
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="default sleep per request, milliseconds")
    parser.add_argument("--bytes", type=int, default=64, help="default response body size")
    parser.add_argument(
        "--idle-timeout", type=float, default=30.0, help="close keep-alive connections idle this long, seconds"
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=Limits.head_timeout_s,
        help="close a connection whose request head is not complete this long after it began, seconds",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=Limits.max_connections,
        help="connections a server holds at once; more wait in the listen backlog",
    )
    parser.add_argument(
        "--emulate",
        action="append",
        default=[],
        metavar="NAME",
        help="emulate another OS's behaviour, e.g. macos-unix-refusal",
    )


def make_listener(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, as getaddrinfo gives a server that binds its own address: asyncio sets
    # TCP_NODELAY only on sockets whose proto says TCP, and the connections accepted here inherit
    # it. With proto 0 an asyncio server handed this listener wrote a response's second part
    # behind Nagle's algorithm, waiting for a delayed ACK: 40 ms per keep-alive request.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    return listener


def load_strategy(name: str, plugins: List[str]) -> Strategy:
    if ":" in name or name.endswith(".py"):
        return load_spec(name, import_timeout_s())()
    cls = resolve(name, discover(plugins)).cls
    assert cls is not None  # resolve() raised for an entry whose class did not load
    return cls()


MAX_PORT = 65535
MAX_BACKLOG = 65535  # the kernel caps it lower (somaxconn); beyond a C int, listen() would raise


def check_server_args(args: argparse.Namespace) -> None:
    """The ranges of the common options, checked before anything is bound (StrategyError)."""
    if not args.host.strip():  # bind() takes "" as every interface: say 0.0.0.0 for that
        raise StrategyError("--host is empty; give an address (0.0.0.0 or :: to listen on every interface)")
    if not 0 <= args.port <= MAX_PORT:
        raise StrategyError("--port must be between 0 and %d (got %d)" % (MAX_PORT, args.port))
    if not 1 <= args.backlog <= MAX_BACKLOG:
        raise StrategyError("--backlog must be between 1 and %d (got %d)" % (MAX_BACKLOG, args.backlog))
    strategy_options(args)


def strategy_options(args: argparse.Namespace) -> Dict[str, str]:
    """`--strategy-option NAME=VALUE`s, with `--executor` as the `executor` option."""
    extra = {"executor": args.executor}
    for item in args.strategy_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StrategyError("--strategy-option takes NAME=VALUE (got %r)" % item)
        extra[key.strip()] = value
    return extra


def check_declared(items: List[str], strategies: List[Type[Strategy]]) -> None:
    """Every `--strategy-option NAME=...` must be declared by one of `strategies`: an option
    nobody declares would be ignored, and the run would look like one made with it."""
    declared = sorted({option.name for strategy in strategies for option in strategy.strategy_options})
    for item in items:
        key = item.partition("=")[0].strip()
        if key not in declared:
            which = (
                "strategy %r declares no option %r" % (strategies[0].name, key)
                if len(strategies) == 1
                else "no strategy of this run declares option %r" % key
            )
            raise StrategyError(
                "--strategy-option %s: %s (declared: %s)" % (item, which, ", ".join(declared) or "none")
            )


def options_from(args: argparse.Namespace, strategy: Strategy) -> ServeOptions:
    workers = args.workers if args.workers is not None else strategy.default_workers
    options = ServeOptions(
        workers=workers,
        start_method=args.start_method,
        backlog=args.backlog,
        idle_timeout_s=args.idle_timeout,
        extra=strategy_options(args),
    ).check(strategy.max_workers)
    strategy.check_options(options)
    return options


def main(argv: Optional[List[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    logger = log.setup(args.log_level)
    os.environ["HANGBENCH_LOG_LEVEL"] = args.log_level  # inherited by every worker (worker.init_worker)
    try:
        check_server_args(args)
        _install_hooks(args.emulate)
        watchdog.start_from_env()  # ends the tree if the harness dies, even by SIGKILL
        # stdout carries the ready line, and only it: what a plugin prints while it is imported
        # and checked goes to stderr, so it cannot forge the address the harness will load.
        with contextlib.redirect_stdout(sys.stderr):
            strategy = load_strategy(args.strategy, args.plugin)
            options = options_from(args, strategy)
            if getattr(args, "command", None) == "serve":  # typed by a user; a run's servers get every case's
                check_declared(args.strategy_option, [type(strategy)])
        work = Work(cpu_us=args.cpu_us, sleep_ms=args.sleep_ms, bytes=args.bytes).validated()
        limits = Limits(head_timeout_s=args.head_timeout, max_connections=args.max_connections).validated()
        app = App(work, limits=limits)
        listener = make_listener(args.host, args.port, options.backlog)
    except (StrategyError, ValueError) as error:
        sys.stderr.write("hangbench: error: %s\n" % error)
        return 2
    except OSError as error:
        sys.stderr.write(
            "hangbench: error: cannot listen on %s:%d: %s\n" % (args.host, args.port, error.strerror or error)
        )
        return 2
    host, port = listener.getsockname()[:2]
    stop = StopEvent()
    install_stop_handlers(stop, interrupt=strategy.interrupt_on_stop)
    ready = {
        "event": READY_EVENT,
        "host": host,
        "port": port,
        "url": "http://%s:%d/" % (host if ":" not in host else "[%s]" % host, port),
        "pid": os.getpid(),
        "strategy": strategy.name,
        "workers": options.workers,
        "start_method": options.start_method,
        "python": platform.python_version(),
        "emulate": list(args.emulate),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    logger.info(
        "{} listening on {}:{} ({} workers, start method {})",
        strategy.name,
        host,
        port,
        options.workers,
        options.start_method,
    )
    try:
        strategy.run(listener, app, options, stop)
    except ServerStop as signal_name:
        logger.info("{} stopping on {}", strategy.name, signal_name)
    except Exception:
        logger.exception("strategy {} raised in serve()", strategy.name)
        return 1
    finally:
        listener.close()
        _bound_exit(EXIT_BOUND_S)
    logger.info("{} stopped ({})", strategy.name, stop.reason or "serve returned")
    return 0


def _bound_exit(seconds: float) -> None:
    """Exit within `seconds` even if interpreter shutdown hangs (multiprocessing's atexit
    handler joins children; a pool left broken by a group-wide SIGTERM can block it)."""
    import threading

    def force() -> None:
        sys.stderr.write("harness serve: shutdown took over %gs; exiting now\n" % seconds)
        sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(seconds, force)
    timer.daemon = True  # daemon threads still run while atexit handlers do
    timer.start()


def _install_hooks(emulate: List[str]) -> None:
    """Forensics and emulation hooks; both are inherited by (or passed on to) every worker."""
    from . import faulthandler_hook

    faulthandler_hook.install_from_env()
    if emulate:
        from . import emulate as emulation

        emulation.apply(emulate)


if __name__ == "__main__":
    raise SystemExit(main())
