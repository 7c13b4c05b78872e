"""Is open-loop bookkeeping cheap? The asyncio engine's open-loop rate vs its closed-loop maximum.

Measures, against one server (started here, stopped at the end), in each of `--rounds` rounds:
1. the closed-loop maximum: the asyncio engine at `--concurrency` connections, as fast as the
   server answers;
2. right after it, open loop at fractions of that maximum (default 0.8, 0.9, 1.0): intended vs
   achieved rate, schedule lag, whether the run fell behind and whose fault that was, latencies,
   and the client's CPU per request (the cost of open-loop bookkeeping, robust to a busy machine).

The goal (issue 10): open loop sustains >= 0.8 x the closed-loop maximum, i.e. at 0.8 x every
request is ok, >= 99 % of the requests that came due are sent, and 99 % are sent within 20 ms
of their intended time (no backlog: a client that only catches up later does not count).

The default server is a trivial fixed-response uvloop server in its own process, so that the
client, not the server, is the limit and the figure is about the client's cost;
`--strategy NAME` uses a hangbench strategy (`python -m harness.server`) instead. Run it on an idle machine:

    .venv/bin/python bench/open_vs_closed.py                      # fixed server, 5 s runs
    .venv/bin/python bench/open_vs_closed.py --strategy threads --connection close

Prints one line per run and a verdict; exits 1 if open loop fell short at 0.8 x in most rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import select
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.load import LoadResult, Workload, run_load  # noqa: E402

RESPONSE = b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + b"x" * 64
SERVER_LIFETIME_S = 600.0
READY_TIMEOUT_S = 30.0
GOAL = 0.8
MAX_LAG_P99_US = 20_000


class _Fixed(asyncio.Protocol):
    """Answers each request head with RESPONSE (closing when asked); no other parsing."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        for _ in range(1000):
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end], buffer[end + 4 :]
            if b"Connection: close" in head:
                self.transport.write(RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
                self.transport.close()
                return
            self.transport.write(RESPONSE)
        self.buffer = buffer


def _fixed_server(ports: Any) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Fixed, "127.0.0.1", 0, backlog=1024)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(SERVER_LIFETIME_S)

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


@contextmanager
def fixed_server() -> Iterator[int]:
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=_fixed_server, args=(ports,), daemon=True)
    server.start()
    try:
        yield int(ports.get(timeout=READY_TIMEOUT_S))
    finally:
        server.terminate()
        server.join(5)
        if server.is_alive():
            server.kill()
            server.join(5)


@contextmanager
def strategy_server(strategy: str, workers: int) -> Iterator[int]:
    argv = [sys.executable, "-m", "harness.server", "--strategy", strategy, "--host", "127.0.0.1", "--port", "0"]
    argv += ["--workers", str(workers)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(REPO), start_new_session=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        if not ready:
            raise SystemExit("the %s server was not ready within %g s" % (strategy, READY_TIMEOUT_S))
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server's own session: it and its workers only
        except ProcessLookupError:
            pass
        proc.wait(10)


def kept_schedule(result: LoadResult) -> bool:
    """Sustained: every request ok, >= 99 % of the due ones sent, and no backlog built up (99 %
    of them sent within MAX_LAG_P99_US of their intended time)."""
    lag_p99 = result.schedule_lag_us.get("p99", 0)
    return result.counts["ok"] == result.total and not result.behind_schedule and lag_p99 <= MAX_LAG_P99_US


def line(label: str, result: LoadResult) -> str:
    lag = result.schedule_lag_us
    return (
        "%-22s intended %8s  achieved %8.0f/s  ok %8.0f/s  p50 %6d us  p99 %7d us  service p99 %7d us  "
        "lag p99 %7s us  behind %-5s client-bound %-5s cpu %.2f (%.1f us/request)"
        % (
            label,
            "%.0f/s" % result.intended_rate_rps if result.intended_rate_rps is not None else "-",
            result.achieved_rate_rps or 0.0,
            result.throughput_rps,
            result.latency_us["p50"],
            result.latency_us["p99"],
            result.service_latency_us["p99"],
            lag.get("p99", "-"),
            result.behind_schedule,
            result.client_bound_schedule,
            result.client_cpu_util,
            1e6 * result.client_cpu_s / max(result.total, 1),
        )
    )


def cpu_per_request_us(result: LoadResult) -> float:
    return 1e6 * result.client_cpu_s / max(result.total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", help="a hangbench strategy instead of the fixed-response server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--connection", default="keep-alive", choices=("keep-alive", "close"))
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (closed-loop maximum, open loop at fractions)")
    parser.add_argument("--fractions", default="0.8,0.9,1.0", help="open-loop rates as fractions of the maximum")
    parser.add_argument("--arrival", default="uniform", choices=("uniform", "poisson"))
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    server = strategy_server(args.strategy, args.workers) if args.strategy else fixed_server()
    kept: dict[float, list[bool]] = {f: [] for f in fractions}
    closed_cost: list[float] = []
    open_cost: list[float] = []
    with server as port:
        base = Workload(
            "127.0.0.1",
            port,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            connection=args.connection,
            arrival=args.arrival,
        )
        # Interleaved: each round measures the maximum, then open loop against that same
        # maximum at once, so that a machine whose load changes compares like with like.
        for round_ in range(1, args.rounds + 1):
            closed = run_load(base)
            closed_cost.append(cpu_per_request_us(closed))
            print(line("#%d closed" % round_, closed), flush=True)
            for fraction in fractions:
                opened = run_load(replace(base, rate=float(round(closed.throughput_rps * fraction))))
                open_cost.append(cpu_per_request_us(opened))
                kept[fraction].append(kept_schedule(opened))
                print(line("#%d open %.2f x" % (round_, fraction), opened), flush=True)
    for fraction, verdicts in kept.items():
        print(
            "open loop at %.2f x the closed-loop maximum kept its schedule in %d of %d rounds"
            % (fraction, sum(verdicts), len(verdicts))
        )
    print(
        "client CPU per request (median): closed loop %.1f us, open loop %.1f us"
        % (statistics.median(closed_cost), statistics.median(open_cost))
    )
    goal = kept.get(GOAL, [])
    goal_met = sum(goal) * 2 > len(goal)
    print(
        "goal (open loop sustains >= %.1f x the closed-loop maximum, in most rounds): %s"
        % (GOAL, "met" if goal_met else "NOT met")
    )
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
