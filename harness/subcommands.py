"""The sub-commands around a run: a scenario file as `run`'s argument, `replay`, and `worker`.

    python -m harness run scenario.toml [more options]    what the file says (options after it win)
    python -m harness replay results/X.json [-o S.toml]  the scenario that re-runs X's cases
    python -m harness worker --master HOST:PORT          a load host of a distributed run

Kept out of `harness.cli` so that the command line stays a list of sub-commands: each function
here is called from one place there. A scenario is translated into the run's own arguments and
parsed by the run's own parser (`harness.scenario`), so it is checked exactly as typed options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import UsageError

SCENARIO_SUFFIX = ".toml"


def add_scenario_argument(run_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    run_parser.add_argument(
        "scenario",
        nargs="?",
        default=None,
        metavar="SCENARIO.toml",
        help="a scenario file: the run's options as TOML keys (options given after it win; "
        "`replay` writes one from a result)",
    )
    return run_parser


def add_commands(sub: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:
    """The `replay` and `worker` sub-commands."""
    replay = sub.add_parser(
        "replay", help="write the scenario file that re-runs a saved result's cases", formatter_class=formatter
    )
    replay.add_argument("result", help="results JSON file")
    replay.add_argument("--output", "-o", default=None, metavar="SCENARIO.toml", help="write here (default: stdout)")
    worker = sub.add_parser(
        "worker",
        help="serve as a load host for a distributed run (--engine distributed --master-bind ...)",
        formatter_class=formatter,
    )
    worker.add_argument(
        "--master", required=True, metavar="HOST[:PORT]", help="the master's address (port 5557 when not given)"
    )


def with_scenario(
    args: argparse.Namespace, argv: Sequence[str], parse: Callable[[list[str]], argparse.Namespace]
) -> argparse.Namespace:
    """`args` itself, or -- when `run` was given a scenario file -- the file's options followed by
    the ones typed, parsed again (so the typed ones win)."""
    path = getattr(args, "scenario", None)
    if args.command != "run" or not path:
        return args
    if not path.endswith(SCENARIO_SUFFIX):
        raise UsageError(
            "`run` takes one argument, a scenario file ending in .toml (got %r); strategies go in --strategy" % path
        )
    from .run_options import add_run_options
    from .scenario import scenario_argv

    typed = list(argv[1:] if argv and argv[0] == "run" else argv)
    typed.reverse()
    typed.remove(path)  # the last occurrence is the positional one
    typed.reverse()
    file_argv = scenario_argv(Path(path), add_run_options(argparse.ArgumentParser(add_help=False)))
    argv = ["run", *file_argv, *typed]
    expanded = parse(argv)
    expanded.scenario = path
    expanded.argv = argv  # the file's options count as typed ones (harness.matrix.given)
    return expanded


def replay(result: str, output: str | None) -> int:
    from .results.jsonio import read_run, write_text_atomic
    from .results.records import ResultsError
    from .run_options import add_run_options
    from .scenario import replay_toml

    try:
        run = read_run(result)
    except ResultsError as error:
        raise UsageError(str(error)) from None
    text = replay_toml(run.config, add_run_options(argparse.ArgumentParser(add_help=False)), source=result)
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(output), text)
        sys.stderr.write("hangbench: scenario written to %s (run it: `python -m harness run %s`)\n" % (output, output))
    return 0


def worker(master: str) -> int:
    from .distributed.worker import run_worker

    return run_worker(master)
