"""How close hangbench's load engine comes to wrk, against nginx, in one run.

    .venv/bin/python bench/engine_vs_wrk.py [--trials 5] [--duration 5] [--client-procs N|auto] [--json PATH]

Starts nginx on 127.0.0.1 (a throw-away configuration in a temporary folder: `daemon off`,
2 worker processes, `access_log off`, every request answered `200` with the 64-byte body that
hangbench's default request `/work?cpu_us=0&sleep_ms=0&bytes=64` gets from its own servers),
then, for both connection modes (keep-alive, and `Connection: close`), alternates

    wrk -t2 -c64 -d5s [-H "Connection: close"] URL
    run_load(Workload(host, port, concurrency=64, duration_s=5, connection=MODE, client_procs=P))

`--trials` times (the order flips every trial so that drift in a shared machine's load does
not favour one side), and prints each rate, the medians and the ratio engine / wrk per mode.
nginx is the server because it is not the bottleneck for either client: the ratio is the
client's own ceiling. P is what `python -m harness --url URL` would choose by default
(`--client-procs auto` for a server it did not start: harness.placement.place_external, one
client process per CPU, as wrk -t), unless `--client-procs N` is given. nginx is always
stopped (SIGQUIT, then SIGKILL of its process group).

A documented script rather than a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List

import wrkrun

from harness import placement
from harness.load import Workload, engines, run_load

MODES = ("keep-alive", "close")
TARGET = "/work?cpu_us=0&sleep_ms=0&bytes=64"  # what the engine sends by default


def engine_rps(port: int, mode: str, duration_s: int, concurrency: int, client_procs: int, warmup_s: float) -> float:
    workload = Workload(
        wrkrun.HOST,
        port,
        concurrency=concurrency,
        duration_s=float(duration_s),
        warmup_s=warmup_s,
        connection=mode,
        client_procs=client_procs,
    )
    result = run_load(workload)
    bad = {kind: n for kind, n in result.counts.items() if kind != "ok" and n}
    if bad:
        print("    engine %s: not all ok: %s" % (mode, bad), file=sys.stderr)
    return float(result.throughput_rps)


def client_procs(text: str, connections: int) -> placement.Placement | None:
    """The engine's client processes: as `python -m harness --url` places them, or as given;
    None for a value that is neither auto nor a number from 1 to `connections`."""
    auto = text == placement.AUTO
    if not auto and not (text.isdigit() and 1 <= int(text) <= connections):
        return None
    return placement.place_external(1 if auto else int(text), auto, connections, engines.get("asyncio").multi_process)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    # Five: on a shared 2-core machine one 5 s trial of either client can move by 10 % or more,
    # and a median of three moved the ratio by several points between runs (docs/load-generator.md).
    parser.add_argument("--trials", type=int, default=5, help="alternating trials per mode (default 5; median)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="connections for both clients (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument(
        "--client-procs",
        default=placement.AUTO,
        help="engine client processes, or auto (default): what the harness chooses for a --url run",
    )
    parser.add_argument(
        "--engine-warmup", type=float, default=1.0, help="engine warm-up before its measurement, seconds (default 1)"
    )
    parser.add_argument("--nginx-workers", default="2", help="nginx worker_processes (default 2; 'auto' allowed)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write every trial and the medians to PATH")
    args = parser.parse_args(argv)
    if not 1 <= args.trials <= 20 or not 1 <= args.duration <= 60:
        print("engine_vs_wrk: error: --trials must be 1..20 and --duration 1..60 seconds", file=sys.stderr)
        return 2
    placed = client_procs(args.client_procs, args.connections)
    if placed is None:
        print("engine_vs_wrk: error: --client-procs must be auto or 1..%d" % args.connections, file=sys.stderr)
        return 2
    args.client_procs = placed.procs

    rates: Dict[str, Dict[str, List[float]]] = {m: {"wrk": [], "engine": []} for m in MODES}
    machine = wrkrun.machine()
    print("machine: %s" % machine)
    print("engine client processes: %d (%s)" % (placed.procs, placed.why))
    try:
        with wrkrun.nginx(args.nginx_workers) as port:
            url = "http://%s:%d%s" % (wrkrun.HOST, port, TARGET)
            for trial in range(args.trials):
                for mode in MODES:
                    order = ("wrk", "engine") if trial % 2 == 0 else ("engine", "wrk")
                    for client in order:
                        if client == "wrk":
                            result = wrkrun.wrk(url, args.wrk_threads, args.connections, args.duration, mode == "close")
                            rps = result.rps
                            if result.errors:
                                print("    wrk %s: %d errors" % (mode, result.errors), file=sys.stderr)
                        else:
                            rps = engine_rps(
                                port, mode, args.duration, args.connections, args.client_procs, args.engine_warmup
                            )
                        rates[mode][client].append(rps)
                        print("trial %d  %-10s  %-6s  %10.0f req/s" % (trial + 1, mode, client, rps), flush=True)
    except (wrkrun.BenchError, ValueError) as error:
        print("engine_vs_wrk: error: %s" % error, file=sys.stderr)
        return 2

    print()
    print(
        "wrk -t%d -c%d -d%ds vs engine (asyncio, client_procs=%d, c=%d), nginx workers=%s, median of %d"
        % (
            args.wrk_threads,
            args.connections,
            args.duration,
            args.client_procs,
            args.connections,
            args.nginx_workers,
            args.trials,
        )
    )
    rows = []
    for mode in MODES:
        wrk_m, engine_m = wrkrun.median(rates[mode]["wrk"]), wrkrun.median(rates[mode]["engine"])
        rows.append([mode, "%.0f" % wrk_m, "%.0f" % engine_m, "%.2f" % wrkrun.ratio(engine_m, wrk_m)])
    headers = ["connection", "wrk req/s", "engine req/s", "engine/wrk"]
    wrkrun.print_table(headers, rows)
    if args.json:
        wrkrun.write_json(
            args.json,
            "engine_vs_wrk.py",
            list(argv if argv is not None else sys.argv[1:]),
            machine,
            {
                "client_procs": placed.procs,
                "client_procs_why": placed.why,
                "table": [dict(zip(headers, row, strict=True)) for row in rows],
                "trials": rates,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
