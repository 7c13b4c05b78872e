"""Each built-in strategy against its production twin, on the twin's home workload, with wrk.

    .venv/bin/python bench/twins_vs_builtins.py [--trials 3] [--duration 5] [--only threads,gevent]

For every pair below whose two sides can run here (a built-in that is not registered yet, or
a twin whose server is not installed, is skipped with a note), both servers are started once
(`python -m harness.server --strategy NAME`, each at its default --workers), then wrk runs
against one and the other in turn, `--trials` times per workload (the order flips every
trial, so drift in a shared machine's load favours neither side). The table gives the
medians and the ratio built-in / twin: above 1.0 the built-in is faster.

Workloads (wrk -t2, keep-alive unless said):
    hello       GET /                            -c64
    hello-close GET /, Connection: close         -c64
    cpu500      GET /work?cpu_us=500             -c64
    sleep20     GET /work?sleep_ms=20            -c256

`--field` measures the field instead, in one run: nginx (2 workers, `return 200` with the same
64-byte body), uvicorn `--workers 2` and every sound built-in, all on `GET /` keep-alive
(wrk -t2 -c64), interleaved (the order rotates every trial); the table gives each one's ratio
to nginx and to uvicorn. `--json PATH` also writes every trial's figures, the medians and the
machine to PATH (results/reference/bench/twins-vs-builtins.json is one, cited by docs/twins.md).

A documented script rather than a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Type

import wrkrun

from harness.server.strategy import discover
from twins import servers


@dataclass(frozen=True)
class Load:
    target: str
    connections: int = 64
    close: bool = False


LOADS: Dict[str, Load] = {
    "hello": Load("/"),
    "hello-close": Load("/", close=True),
    "cpu500": Load("/work?cpu_us=500"),
    "sleep20": Load("/work?sleep_ms=20", connections=256),
}

# (built-in, twin class, home workloads). The twin's home is where its model is meant to shine.
PAIRS: List[Tuple[str, Type[servers.Twin], Tuple[str, ...]]] = [
    ("threads", servers.GunicornGthread, ("hello", "sleep20")),
    ("threads", servers.GunicornGthread1x32, ("hello",)),
    ("gevent", servers.GunicornGevent, ("hello", "sleep20")),
    ("prefork-accept", servers.GunicornSync, ("hello-close", "cpu500")),
    ("scm-rights", servers.GunicornSync, ("hello-close", "cpu500")),
    ("reuseport", servers.Uvicorn, ("hello", "cpu500")),
    ("asyncio-executor", servers.Uvicorn, ("hello", "cpu500")),
]


def twin_spec(cls: Type[servers.Twin]) -> str:
    return "%s:%s" % (cls.__module__, cls.__name__)


def runnable_pairs(only: Optional[List[str]]) -> List[Tuple[str, Type[servers.Twin], Tuple[str, ...]]]:
    registry = discover()
    chosen = []
    for builtin, twin, loads in PAIRS:
        if only and builtin not in only and twin.name not in only:
            continue
        entry = registry.get(builtin)
        if entry is None or entry.error:
            print("skip %s vs %s: %s is not available here" % (builtin, twin.name, builtin))
            continue
        reason = twin.unavailable()
        if reason:
            print("skip %s vs %s: %s" % (builtin, twin.name, reason))
            continue
        chosen.append((builtin, twin, loads))
    return chosen


def measure(
    builtin: str, twin: Type[servers.Twin], loads: Tuple[str, ...], trials: int, duration_s: int
) -> Dict[str, Dict[str, List[float]]]:
    """{load: {"builtin": [rps...], "twin": [rps...]}}, both servers up for the whole pair."""
    rates: Dict[str, Dict[str, List[float]]] = {load: {"builtin": [], "twin": []} for load in loads}
    started: Dict[str, wrkrun.Server] = {}
    try:
        started["builtin"] = wrkrun.start_server(builtin)
        started["twin"] = wrkrun.start_server(twin_spec(twin))
        for side, server in started.items():
            wrkrun.wrk(server.url("/"), duration_s=1)  # warm-up: workers started, caches filled
            print("  %s: %s, %s workers" % (side, server.ready["strategy"], server.ready["workers"]))
        for trial in range(trials):
            for load_name in loads:
                load = LOADS[load_name]
                order = ("builtin", "twin") if trial % 2 == 0 else ("twin", "builtin")
                for side in order:
                    result = wrkrun.wrk(
                        started[side].url(load.target), 2, load.connections, duration_s, close=load.close
                    )
                    rates[load_name][side].append(result.rps)
                    note = "  (%d errors)" % result.errors if result.errors else ""
                    print(
                        "  trial %d  %-11s  %-7s  %9.0f req/s%s" % (trial + 1, load_name, side, result.rps, note),
                        flush=True,
                    )
    finally:
        for server in started.values():
            wrkrun.stop_server(server)
    return rates


def sound_builtins() -> List[str]:
    """Every built-in that is not broken on purpose and can run here, in registry order."""
    names = []
    for name, entry in discover().items():
        cls = entry.cls
        if entry.source == "builtin" and cls is not None and cls.broken is None and not entry.unavailable:
            names.append(name)
    return names


def measure_field(trials: int, duration_s: int) -> Dict[str, List[float]]:
    """{server: [rps per trial]} for nginx, uvicorn x2 and the sound built-ins, all started at
    once and measured in a rotating order, so that drift in the machine's load favours none."""
    rates: Dict[str, List[float]] = {}
    started: Dict[str, wrkrun.Server] = {}
    with wrkrun.nginx("2") as nginx_port:
        try:
            urls = {"nginx": "http://%s:%d/" % (wrkrun.HOST, nginx_port)}
            for name, spec, args in [("uvicorn x2", twin_spec(servers.Uvicorn), ["--workers", "2"])] + [
                (name, name, []) for name in sound_builtins()
            ]:
                started[name] = wrkrun.start_server(spec, args)
                urls[name] = started[name].url("/")
            for url in urls.values():
                wrkrun.wrk(url, duration_s=1)  # warm-up
            names = list(urls)
            for trial in range(trials):
                shift = trial % len(names)
                for name in names[shift:] + names[:shift]:
                    result = wrkrun.wrk(urls[name], 2, 64, duration_s)
                    rates.setdefault(name, []).append(result.rps)
                    note = "  (%d errors)" % result.errors if result.errors else ""
                    print("  trial %d  %-16s %9.0f req/s%s" % (trial + 1, name, result.rps, note), flush=True)
        finally:
            for server in started.values():
                wrkrun.stop_server(server)
    return rates


def field_rows(rates: Dict[str, List[float]]) -> List[List[str]]:
    medians = {name: wrkrun.median(values) for name, values in rates.items()}
    nginx, uvicorn = medians["nginx"], medians["uvicorn x2"]
    order = sorted(medians, key=lambda name: -medians[name])
    return [
        [
            name,
            "%.0f" % medians[name],
            "%.2f" % wrkrun.ratio(medians[name], nginx),
            "%.2f" % wrkrun.ratio(medians[name], uvicorn),
        ]
        for name in order
    ]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=3, help="interleaved trials per workload (default 3; median)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--only", default="", help="comma-separated built-in or twin names to include")
    parser.add_argument("--field", action="store_true", help="nginx, uvicorn x2 and every sound built-in on GET /")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write every figure to PATH")
    args = parser.parse_args(argv)
    if not 1 <= args.trials <= 20 or not 1 <= args.duration <= 60:
        print("twins_vs_builtins: error: --trials must be 1..20 and --duration 1..60 seconds", file=sys.stderr)
        return 2
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    machine = wrkrun.machine()
    print("machine: %s" % machine)
    rows: List[List[str]] = []
    trials: Dict[str, object] = {}
    try:
        if args.field:
            field = measure_field(args.trials, args.duration)
            rows, trials = field_rows(field), {"field": field}
        for builtin, twin, loads in [] if args.field else runnable_pairs(only):
            name = twin.name
            print("%s vs %s" % (builtin, name), flush=True)
            rates = measure(builtin, twin, loads, args.trials, args.duration)
            trials["%s vs %s" % (builtin, name)] = rates
            for load in loads:
                b, t = wrkrun.median(rates[load]["builtin"]), wrkrun.median(rates[load]["twin"])
                rows.append([load, builtin, "%.0f" % b, name, "%.0f" % t, "%.2f" % wrkrun.ratio(b, t)])
    except wrkrun.BenchError as error:
        print("twins_vs_builtins: error: %s" % error, file=sys.stderr)
        return 2
    print()
    if args.field:
        keys = headers = ["server", "req/s", "/ nginx", "/ uvicorn x2"]
        print("GET / keep-alive, wrk -t2 -c64 -d%ds, median of %d rotating trials" % (args.duration, args.trials))
    else:
        headers = ["workload", "built-in", "req/s", "twin", "req/s", "ratio"]
        keys = ["workload", "built-in", "built-in req/s", "twin", "twin req/s", "ratio"]  # JSON keys are unique
        print("wrk -t2 -d%ds, median of %d interleaved trials; ratio = built-in / twin" % (args.duration, args.trials))
    wrkrun.print_table(headers, rows)
    if args.json:
        table = [dict(zip(keys, row, strict=True)) for row in rows]
        wrkrun.write_json(
            args.json,
            "twins_vs_builtins.py",
            list(argv if argv is not None else sys.argv[1:]),
            machine,
            {"table": table, "trials": trials},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
