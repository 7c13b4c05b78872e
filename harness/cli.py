"""Command-line entry: argument parsing and dispatch to the sub-commands; no logic of its own.

    python -m harness [run] --strategy all ...   the benchmark (the default sub-command)
    python -m harness serve --strategy NAME      one strategy as an ordinary HTTP/1.1 server
    python -m harness list                       strategies, built-in and plugged in
    python -m harness compare A.json B.json      change between two saved runs
    python -m harness report A.json [B.json …]   one HTML page (or CSV) of saved runs
    python -m harness cleanup [--kill]           leftovers of runs whose harness was killed

The installed `hangbench` command is the same entry point; usage lines name whichever of the two
was typed. Errors a user can cause -- argparse's own included -- end with one line on stderr,
`hangbench: error: ...`, and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__
from .errors import ERROR_PREFIX, UsageError, prog_name
from .gates import EXIT_CODES
from .run_options import REPEATED, DefaultsFormatter, Parser, add_run_options, check_once
from .server.process import build_parser as build_serve_parser
from .subcommands import add_commands, add_scenario_argument, with_scenario

COMMANDS = ("run", "serve", "list", "compare", "report", "replay", "worker", "workloads", "verdict", "cleanup")
HELP = ("-h", "--help")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    prog = prog or prog_name()
    parser = Parser(
        prog=prog,
        description="Benchmark Python server concurrency strategies: throughput, tail latency, hang rate.",
        epilog="Without a sub-command, `run` is meant: `%s --strategy all`. Its options: `%s --help`." % (prog, prog),
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version="hangbench " + __version__)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    add_scenario_argument(
        add_run_options(
            sub.add_parser(
                "run",
                help="run the workload against strategies (default)",
                description="Run the same workload against each selected strategy, one at a time (the default "
                "sub-command). Other sub-commands: %s (`%s COMMAND --help`)." % (", ".join(COMMANDS[1:]), prog),
                epilog=EXIT_CODES,
                formatter_class=DefaultsFormatter,
            )
        )
    )
    build_serve_parser(
        sub.add_parser("serve", help="run one strategy as an HTTP/1.1 server", formatter_class=DefaultsFormatter)
    )
    list_parser = sub.add_parser("list", help="list strategies, built-in and plugged in")
    list_parser.add_argument("--plugin", action="append", default=[], metavar="SPEC", help="also load this plugin")
    compare = sub.add_parser("compare", help="compare two saved results files")
    compare.add_argument("baseline", help="results JSON file")
    compare.add_argument("candidate", help="results JSON file")
    report = sub.add_parser(
        "report",
        help="an HTML page (or CSV) of saved results; two or more files: compared",
        formatter_class=DefaultsFormatter,
    )
    cleanup = sub.add_parser(
        "cleanup",
        help="list (or --kill) processes and cgroups left by runs whose harness died",
        formatter_class=DefaultsFormatter,
    )
    cleanup.add_argument("--kill", action="store_true", help="end them (default: only list them)")
    cleanup.add_argument("--run", default=None, metavar="RUN_ID", help="only the leftovers of this run id")
    report.add_argument("results", nargs="+", help="results JSON file(s)")
    report.add_argument("--output", "-o", default=None, help="output file (default: the first file with .html/.csv)")
    report.add_argument("--format", default="html", choices=["html", "csv"], help="what to write")
    report.add_argument("--png", default=None, metavar="DIR", help="also write every plot as a PNG into DIR")
    add_commands(sub, DefaultsFormatter)
    workloads = sub.add_parser("workloads", help="list the named workloads and their parameters")
    workloads.add_argument("--workload-file", default=None, metavar="FILE.toml", help="also list this file's workloads")
    verdict = sub.add_parser("verdict", help="print the verdict (best strategy per workload) of a saved run")
    verdict.add_argument("results", help="results JSON file")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `python -m harness --strategy all` means `run`: the main job needs no sub-command, and
    # `--help` shows the options people came for (the run's, whose description lists the rest).
    if not argv or argv[0] not in (*COMMANDS, "--version"):
        argv.insert(0, "run")
    try:
        args = check_once(build_parser().parse_args(argv))  # the typed options alone
        args = with_scenario(args, argv, build_parser().parse_args)
        vars(args).pop(REPEATED, None)  # a scenario's option typed again: the typed one wins
        if getattr(args, "argv", None) is None:
            args.argv = argv  # which options were typed: a workload's values yield only to those (harness.matrix)
        return _dispatch(args)
    except UsageError as error:
        sys.stderr.write(ERROR_PREFIX + " ".join(str(error).split()) + "\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("hangbench: interrupted\n")
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .server.process import run as serve

        return serve(args)
    if args.command == "list":
        from .listing import list_strategies

        return list_strategies(args.plugin)
    if args.command == "compare":
        from .results.compare import compare_files

        return compare_files(args.baseline, args.candidate)
    if args.command == "cleanup":
        from .supervise.cleanup import cleanup_main

        return cleanup_main(args.kill, only_run=args.run)
    if args.command == "report":
        from .report import report_command

        return report_command(args.results, args.output, args.format, args.png)
    if args.command == "workloads":
        from .workloads import list_workloads

        return list_workloads(args.workload_file)
    if args.command == "verdict":
        from .results.verdict import verdict_main

        return verdict_main(args.results)
    if args.command in ("replay", "worker"):
        from . import subcommands

        return (
            subcommands.replay(args.result, args.output)
            if args.command == "replay"
            else subcommands.worker(args.master)
        )
    from .run import run_benchmark

    return run_benchmark(args)
