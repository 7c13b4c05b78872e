"""Options of the benchmark run (`python -m harness [run]`), kept apart from the run's logic.

Grouped as a reader looks for them: what to run, the load, the server (the options of `serve`,
passed through to every server started), output and bounds. Every option's help ends with its
default (`DefaultsFormatter`); the values are checked by `harness.settings`, not here, so that
one module owns the one-sentence messages.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn, Optional, cast

from .errors import UsageError
from .load import workload as limits
from .load.engines import ENGINE_NAMES
from .load.workload import CONNECTIONS, READ_MODES
from .results.knee import DEFAULT_SLO_P99_MS
from .server.process import add_server_options
from .settings import DEFAULT_DURATION_S, DEFAULT_WARMUP_S


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, said once and in words for the empty ones."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            text == argparse.SUPPRESS
            or "(default" in text
            or action.required
            or not action.option_strings
            or action.default is argparse.SUPPRESS
        ):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._VersionAction)):
            return text  # a flag: off unless given
        if action.default is None or action.default == []:
            return text + " (default: none)"
        return text + " (default: %(default)s)"


def add_run_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--strategy", default="all", help="'all' (every registered strategy) or a comma-separated list of names"
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--engine",
        default="asyncio",
        choices=[*ENGINE_NAMES, "distributed"],  # distributed: asyncio on Locust workers (harness.remote)
        help="client engine: asyncio (uvloop when installed), threads (the article's ThreadPoolExecutor client) "
        "or distributed (asyncio on Locust workers: --load-workers, --master-bind)",
    )
    load.add_argument(
        "--client-procs",
        type=client_procs_arg,
        default="auto",
        metavar="N|auto",
        help="asyncio engine: spread connections over N client processes; auto: one per core the server can use, "
        "within the cores it leaves free (or half the machine), chosen per case and recorded; with --url: one per CPU",
    )
    load.add_argument(
        "--pin",
        action="store_true",
        help="put the server and the client on disjoint CPUs (half each; on 2 CPUs: server CPU 0, client CPU 1); "
        "recorded per case",
    )
    load.add_argument("--concurrency", "-c", type=int, default=32, help="concurrent requests in flight")
    load.add_argument(
        "--duration",
        "-d",
        type=float,
        default=None,
        help="measurement seconds per case (default %g, unless --requests)" % DEFAULT_DURATION_S,
    )
    load.add_argument("--requests", "-n", type=int, default=None, help="stop after N measured requests instead")
    load.add_argument("--warmup", "-w", type=float, default=DEFAULT_WARMUP_S, help="warm-up seconds before measuring")
    load.add_argument(
        "--connection",
        default="close",
        choices=list(CONNECTIONS),
        help="one connection per request (close, as the article's client) or keep-alive",
    )
    load.add_argument(
        "--read",
        default="content-length",
        choices=list(READ_MODES),
        help="read a response by its Content-Length, or until the server closes (eof, as naive clients do)",
    )
    load.add_argument(
        "--deadline",
        type=float,
        default=2.0,
        help="seconds: a request with no complete response within this is a hang",
    )
    load.add_argument(
        "--timelines",
        type=int,
        default=20,
        help="hung or failed requests whose milestones (connect, sent, first byte, ...) are kept per case",
    )
    server = parser.add_argument_group("server (passed to every strategy's server)")
    add_server_options(cast(argparse.ArgumentParser, server), multi=True)  # a group takes add_argument alike
    # The run picks each server's port itself: --port is accepted only to be refused in one
    # sentence (harness.settings), and is not listed among the run's options.
    parser.set_defaults(port=None)
    for action in parser._actions:
        if action.dest == "port":
            action.help = argparse.SUPPRESS
    server.add_argument(
        "--python",
        default=None,
        metavar="PATH[,PATH...]",
        help="run the server side under these interpreters (default: this one)",
    )
    out = parser.add_argument_group("output and bounds")
    out.add_argument(
        "--output",
        "-o",
        default=None,
        help="results JSON path, a new or regular file; its table goes beside it as <stem>.md "
        "(default results/<UTC timestamp>-<label>.json, table results/latest.md)",
    )
    out.add_argument("--label", default=None, help="label for the results file name (default: the strategies run)")
    out.add_argument(
        "--report",
        action="store_true",
        help="also write the HTML report beside the JSON as <stem>.html (plots need the [report] extra)",
    )
    out.add_argument("--ready-timeout", type=float, default=15.0, help="seconds a server may take to start answering")
    out.add_argument(
        "--stop-grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL when stopping a server"
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    add_gate_options(parser)
    add_remote_options(parser)
    add_matrix_options(parser)  # workloads, repetitions, open loop, sweeps (built by harness.matrix)
    return parser


def client_procs_arg(text: str) -> int | str:
    """`--client-procs`: a whole number (checked by harness.settings) or `auto`."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number or auto, got %r" % text) from None


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """CI gates: what makes the exit status 1 (harness.gates)."""
    gates = parser.add_argument_group("gates (exit status 1 when one fails)")
    gates.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help="fail when [CASE:]METRIC OP VALUE holds for a case, e.g. 'hang_rate>0', 'p99_ms>50', "
        "'throughput_rps<1000', 'threads:hangs>0' (repeatable; metrics in results/README.md)",
    )
    gates.add_argument("--baseline", default=None, metavar="OLD.json", help="results file to compare throughput with")
    gates.add_argument(
        "--fail-if-slower",
        default=None,
        metavar="PCT",
        help="with --baseline: fail when a case's throughput dropped by more than PCT (e.g. 10%%)",
    )
    gates.add_argument(
        "--allow-failures",
        action="store_true",
        help="a case that fails to start, crashes, is not ready or times out does not make the exit status 1",
    )


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    """A server the harness did not start, and load from several processes or hosts (harness.remote)."""
    remote = parser.add_argument_group("other machines (docs/distributed.md)")
    remote.add_argument(
        "--url",
        default=None,
        metavar="http://HOST:PORT/PATH",
        help="measure a server that is already running there instead of starting strategies "
        "(no server-side metrics or forensics; not with --strategy)",
    )
    remote.add_argument(
        "--load-workers",
        type=int,
        default=None,
        metavar="N",
        help="--engine distributed: N local worker processes (an alternative to --client-procs)",
    )
    remote.add_argument(
        "--master-bind",
        default=None,
        metavar="HOST:PORT",
        help="--engine distributed: where the master listens for `worker --master HOST:PORT` on other hosts",
    )
    remote.add_argument(
        "--expect-workers",
        type=int,
        default=None,
        metavar="N",
        help="--engine distributed with --master-bind: wait for N workers before the first case",
    )


REPEATED = "_repeated_options"  # set on the namespace by Once, removed by check_once


class Once(argparse.Action):
    """A one-value option that notes being given twice, for `check_once` to refuse: argparse would
    keep the last value silently, and which one was meant is a guess. (Noted, not refused here:
    a scenario file's options are parsed again with the typed ones after them, which then win.)"""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Optional[str] = None
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            setattr(namespace, REPEATED, (*getattr(namespace, REPEATED, ()), option or self.dest))
        setattr(namespace, self.dest, values)


def check_once(args: argparse.Namespace) -> argparse.Namespace:
    """`args` without Once's note, or UsageError when a one-value option was given twice."""
    repeated = vars(args).pop(REPEATED, ())
    if repeated:
        raise UsageError("%s is given twice; give it once" % repeated[0])
    return args


class Parser(argparse.ArgumentParser):
    """argparse's errors as UsageError: one line with the shared prefix, not usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError("%s (see `%s --help`)" % (message, self.prog))


def add_matrix_options(parser: argparse.ArgumentParser) -> None:
    """The run's options for workloads, repetitions, open loop and sweeps (one argument group)."""
    group = parser.add_argument_group("workloads, repetitions, open loop and sweeps")
    group.add_argument(
        "--workload",
        default=None,
        metavar="NAME[,NAME...]|all",
        help="named workload(s) to run (see `workloads`); explicit flags such as -c override them "
        "(default: hello, i.e. the options as given)",
    )
    group.add_argument("--workload-file", default=None, metavar="FILE.toml", help="also define the workloads in FILE")
    group.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="run every case N times, each with a fresh server, interleaved (default 1; --suite: 3, --quick: 2)",
    )
    group.add_argument(
        "--suite", action="store_true", help="every sound strategy on every workload, repeated, then a verdict"
    )
    group.add_argument("--quick", action="store_true", help="with --suite: the short version (under 3 minutes)")
    group.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="open loop: send R requests/s in all at fixed intended times; --concurrency is then the connection "
        "pool; asyncio engine only (default: none, closed loop)",
    )
    group.add_argument(
        "--load-model",
        default=None,
        choices=["open", "closed"],
        help="with --rate or --sweep rate=...: 'open' sends at intended times whatever the responses do; "
        "'closed' paces each connection at its share of the rate but waits for each response first "
        "(Locust's constant_throughput: the closed loop at the same throughput) (default: open with a rate, "
        "else closed)",
    )
    group.add_argument(
        "--arrival", default="uniform", choices=list(limits.ARRIVALS), help="open loop: intended times' spacing"
    )
    group.add_argument(
        "--sweep",
        action=Once,
        default=None,
        metavar="KIND=LEVELS",
        help="measure at each level: concurrency=1,8,32,128,512 or rate=500:20000:x2 (a fresh server per level)",
    )
    group.add_argument(
        "--slo-p99",
        type=float,
        default=DEFAULT_SLO_P99_MS,
        metavar="MS",
        help="a rate sweep's knee: the highest rate with p99 under this, no hang, >= 99%% of the rate achieved",
    )
