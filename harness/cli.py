"""Command-line entry: argument parsing and dispatch to the sub-commands; no logic of its own.

    python -m harness [run] --strategy all ...   the benchmark (the default sub-command)
    python -m harness serve --strategy NAME      one strategy as an ordinary HTTP/1.1 server
    python -m harness list                       strategies, built-in and plugged in
    python -m harness compare A.json B.json      change between two saved runs

Errors a user can cause end with one sentence on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__
from .server.process import build_parser as build_serve_parser

COMMANDS = ("run", "serve", "list", "compare")


class UsageError(Exception):
    """Bad input from the user: reported as one sentence, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark Python server concurrency strategies: throughput, tail latency, hang rate.",
        epilog="Without a sub-command, `run` is meant: `python -m harness --strategy all`. "
        "Its options: `python -m harness run --help`.",
    )
    parser.add_argument("--version", action="version", version="hangbench " + __version__)
    sub = parser.add_subparsers(dest="command")
    from .run_options import add_run_options

    add_run_options(sub.add_parser("run", help="run the workload against strategies (default)"))
    build_serve_parser(sub.add_parser("serve", help="run one strategy as an HTTP/1.1 server"))
    list_parser = sub.add_parser("list", help="list strategies, built-in and plugged in")
    list_parser.add_argument("--plugin", action="append", default=[], metavar="SPEC", help="also load this plugin")
    compare = sub.add_parser("compare", help="compare two saved results files")
    compare.add_argument("baseline", help="results JSON file")
    compare.add_argument("candidate", help="results JSON file")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `python -m harness --strategy all` means `run`: the main job needs no sub-command.
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .server.process import run as serve

            return serve(args)
        if args.command == "list":
            from .listing import list_strategies

            return list_strategies(args.plugin)
        if args.command == "compare":
            from .results.table import compare_files

            return compare_files(args.baseline, args.candidate)
        from .run import run_benchmark

        return run_benchmark(args)
    except UsageError as error:
        sys.stderr.write("harness: error: %s\n" % error)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("harness: interrupted\n")
        return 130
