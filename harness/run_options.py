"""Options of the benchmark run (`python -m harness [run]`), kept apart from the run's logic.

The server options of `serve` are accepted too and passed through to every server started.
"""

from __future__ import annotations

import argparse

from .server.process import add_server_options


def add_run_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--strategy", default="all", help="'all' (every registered strategy) or a comma-separated list (default all)"
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--engine",
        default="asyncio",
        choices=["asyncio", "threads"],
        help="client engine: asyncio (default; uvloop when installed) or threads (the article's ThreadPoolExecutor client)",
    )
    load.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="asyncio engine: spread connections over N client processes (default 1)",
    )
    load.add_argument("--concurrency", "-c", type=int, default=32, help="concurrent requests in flight (default 32)")
    load.add_argument(
        "--duration",
        "-d",
        type=float,
        default=None,
        help="measurement seconds per strategy (default 10, unless --requests)",
    )
    load.add_argument(
        "--requests", "-n", type=int, default=None, help="stop after N measured requests instead of a duration"
    )
    load.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before measuring (default 2)")
    load.add_argument(
        "--connection",
        default="close",
        choices=["close", "keep-alive"],
        help="one connection per request (close, default, as the article's client) or keep-alive",
    )
    load.add_argument(
        "--read",
        default="content-length",
        choices=["content-length", "eof"],
        help="read the response by Content-Length (default) or until the server closes (eof, as naive clients do)",
    )
    load.add_argument(
        "--deadline",
        type=float,
        default=2.0,
        help="a request with no complete response within this many seconds is a hang (default 2)",
    )
    server = parser.add_argument_group("server (passed to every strategy's server)")
    add_server_options(server, multi=True)
    server.add_argument(
        "--python",
        default=None,
        metavar="PATH[,PATH...]",
        help="run the server side under these interpreters (default: this one)",
    )
    out = parser.add_argument_group("output and bounds")
    out.add_argument(
        "--output", "-o", default=None, help="results JSON path (default results/<UTC timestamp>-<label>.json)"
    )
    out.add_argument("--label", default=None, help="label for the results file name (default: the strategies run)")
    out.add_argument(
        "--ready-timeout", type=float, default=15.0, help="seconds a server may take to start answering (default 15)"
    )
    out.add_argument(
        "--stop-grace",
        type=float,
        default=3.0,
        help="seconds between SIGTERM and SIGKILL when stopping a server (default 3)",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return parser
