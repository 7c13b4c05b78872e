"""A pytest plugin: hangbench cases as pytest-benchmark benchmarks.

    def test_threads(hangbench):
        result = hangbench.run("threads", workload="hello")
        assert result.hangs == 0

Registered through the `pytest11` entry point, so installing hangbench with its `[pytest]` extra
makes the `hangbench` fixture available in any project. It runs `python -m harness` for one
strategy (a built-in, an installed plugin, or `path/to/file.py` — a project's own server) in a
subprocess, exactly as the command line would, and hands the result to pytest-benchmark, so
that `--benchmark-autosave`, `--benchmark-compare`, `--benchmark-compare-fail=mean:10%` and
`pytest-benchmark compare/list` work on strategies as they do on functions.

What pytest-benchmark sees: one *round* per repetition, whose "time" is the seconds per
complete response (1 / throughput) of that repetition — lower is better, as pytest-benchmark
assumes, and `mean:10%` then means "10 % fewer responses per second". A repetition that served
nothing counts as one second per response, so a dead server cannot look fast. Throughput,
latency percentiles, hangs and the case's status go into `extra_info` (kept in the saved JSON).

pytest-benchmark has no public call for "record these measured values": `pedantic()` times a
function it calls. The plugin therefore uses the fixture's `_make_stats` — the call `pedantic`
itself makes — which is why the `[pytest]` extra pins pytest-benchmark to the major versions
it was checked against. With `--benchmark-disable` (or `--benchmark-skip`) the case still runs
and the assertions still hold; only the statistics are not recorded.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MEASURED = ("completed", "no-response")
DEFAULT_WORKLOAD = "hello"
RUN_SLACK_S = 120.0  # server start, warm-up and stop on top of the measurement, per repetition


class HangbenchError(Exception):
    """The harness could not run the case (bad options, no result file); the message says why."""


@dataclass(frozen=True)
class CaseResult:
    """One case's repetitions, as the results JSON has them."""

    strategy: str
    records: tuple[dict[str, Any], ...]
    path: Path

    @property
    def statuses(self) -> list[str]:
        return [str(r.get("status")) for r in self.records]

    @property
    def hangs(self) -> int:
        return sum(int((r.get("requests") or {}).get("hang", 0)) for r in self.records)

    @property
    def throughput_rps(self) -> list[float]:
        return [float(r.get("throughput_rps") or 0.0) for r in self.records]

    @property
    def p99_ms(self) -> list[float]:
        return [float((r.get("latency_us") or {}).get("p99", 0)) / 1000.0 for r in self.records]

    @property
    def completed(self) -> bool:
        return all(status in MEASURED for status in self.statuses)


class Hangbench:
    """The `hangbench` fixture: `run()` one strategy once per test."""

    def __init__(self, benchmark: Any, workdir: Path) -> None:
        self._benchmark = benchmark
        self._workdir = workdir
        self._used = False

    def run(
        self,
        strategy: str,
        workload: str = "hello",
        *,
        repeat: int = 3,
        duration: float = 2.0,
        warmup: float = 1.0,
        options: Sequence[str] = (),
    ) -> CaseResult:
        """Run `strategy` on `workload` `repeat` times (a fresh server each time) and record it."""
        if self._used:
            raise HangbenchError("the hangbench fixture runs one case per test (pytest-benchmark records one)")
        self._used = True
        if repeat < 1:
            raise HangbenchError(f"repeat must be at least 1 (got {repeat})")
        known = _run_options()
        argv = [*_strategy_options(strategy), "--duration", str(duration), "--warmup", str(warmup)]
        argv += ["--quiet", "--allow-failures", *options]
        if workload != DEFAULT_WORKLOAD:
            if "--workload" not in known:
                raise HangbenchError(f"this hangbench has no --workload option: cannot run workload {workload!r}")
            argv += ["--workload", workload]
        # One harness run with --repeat N where the harness has it; else N runs, one record each.
        runs = [[*argv, "--repeat", str(repeat)]] if "--repeat" in known and repeat > 1 else [argv] * repeat
        per_run = repeat // len(runs)
        records: list[dict[str, Any]] = []
        for index, run_argv in enumerate(runs):
            out = self._workdir / f"hangbench-result-{index}.json"
            data = self._run_once(strategy, [*run_argv, "--output", str(out)], out, per_run)
            records += [r for r in data.get("strategies", []) if r.get("workload", DEFAULT_WORKLOAD) == workload]
        result = CaseResult(strategy=strategy, records=tuple(records), path=out)
        self._record(result, workload)
        return result

    def _run_once(self, strategy: str, argv: list[str], out: Path, repeat: int) -> dict[str, Any]:
        duration = float(argv[argv.index("--duration") + 1]) + float(argv[argv.index("--warmup") + 1])
        bound = max(1, repeat) * (duration + RUN_SLACK_S)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "harness", *argv],
                capture_output=True,
                text=True,
                timeout=bound,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise HangbenchError(f"hangbench run of {strategy!r} took over {bound:.0f} s") from None
        if done.returncode == 2 or not out.exists():
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise HangbenchError(f"hangbench could not run {strategy!r}: {tail[0]}")
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data

    def _record(self, result: CaseResult, workload: str) -> None:
        bench = self._benchmark
        bench.extra_info.update(
            {
                "hangbench_strategy": result.strategy,
                "hangbench_workload": workload,
                "throughput_rps": result.throughput_rps,
                "p99_ms": result.p99_ms,
                "hangs": result.hangs,
                "statuses": result.statuses,
            }
        )
        bench._mode = "hangbench.run(...)"  # one use per test, as pytest-benchmark enforces
        if getattr(bench, "disabled", False) or not result.records:
            return
        stats = bench._make_stats(1)  # see the module docstring: the call pedantic() makes
        for rps in result.throughput_rps:
            stats.update(1.0 / rps if rps > 0 else 1.0)


def _strategy_options(strategy: str) -> list[str]:
    """`--strategy NAME`, or for a plugin (`path/to/file.py`, `module:Class`) `--plugin SPEC
    --strategy NAME` with the name the plugin registers."""
    if not (strategy.endswith(".py") or ":" in strategy):
        return ["--strategy", strategy]
    from .server.strategy import discover

    names = [name for name, entry in discover([strategy]).items() if entry.spec == strategy]
    if len(names) != 1:
        raise HangbenchError(f"plugin {strategy!r} registers {len(names)} strategies; name one of them")
    return ["--plugin", strategy, "--strategy", names[0]]


@functools.lru_cache(maxsize=1)
def _run_options() -> frozenset[str]:
    """The options of `python -m harness run` in this installation: the plugin passes
    `--workload`/`--repeat` only where they exist (older harnesses lack them)."""
    from .cli import build_parser

    parser = build_parser("hangbench")
    for action in parser._actions:  # argparse has no public list of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            run = action.choices["run"]
            return frozenset(option for item in run._actions for option in item.option_strings)
    return frozenset()


@pytest.fixture
def hangbench(benchmark: Any, tmp_path: Path) -> Iterator[Hangbench]:
    """Run a hangbench case inside pytest-benchmark (see `harness.pytest_plugin`)."""
    yield Hangbench(benchmark, tmp_path)
