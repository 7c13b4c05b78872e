"""The order of repeated runs, and the time budget of `--suite` and `--suite --quick`.

`--repeat N` runs every case N times, each with a fresh server, interleaved: A B C A B C, not
A A B B C C. On a shared machine the background load drifts over minutes; interleaved, the
drift lands on every case alike and shows up as spread within each case (which the
significance test accounts for) instead of as a difference between cases (which it would
mistake for a real one).

The suite runs every sound strategy on every built-in workload. Its settings are chosen so that
it fits a wall-clock budget on a 2-core machine, by this arithmetic:

    wall ≈ runs x (warm-up + measurement + CASE_OVERHEAD_S),  runs = cases x workloads x repeat

CASE_OVERHEAD_S = 1.5 s is measured: a sound case's `wall_s` (server start to stop) exceeds
warm-up + measurement by 0.2-0.5 s in results/reference/*.json, and the default run
(`--strategy all`, six 12-s cases) takes 78-96 s, i.e. about 1 s more per case for the harness
between cases. The 4 built-in sound strategies (scm-rights, threads, gevent, asyncio-executor;
one start method each) on the 6 workloads make 24 (case, workload) pairs:

    full:  repeat 3, warm-up 1 s:   600 s / 72 runs = 8.3 s per run -> measure 5.5 s
           (rounded down to 0.5 s)  -> 72 x (1 + 5.5 + 1.5) = 576 s, about 10 minutes
    quick: repeat 2, warm-up 0.5 s: 160 s / 48 runs = 3.3 s per run -> measure 1.0 s
                                    -> 48 x (0.5 + 1.0 + 1.5) = 144 s, under 3 minutes

Two repetitions are the fewest that allow a significance test, and a weak one: Welch's t then
has 1-2 degrees of freedom, so a 2x gap (processes against threads on `cpu`) is significant
only when the two runs of each case agree within about 5 % (2000±100 against 1000±50 ok/s:
p = 0.03; at ±10 %: p = 0.08). The quick suite's best is the best mean and its ties are wide:
it is a smoke test; the full suite's three repetitions narrow the 95 % interval of a mean from
±9.0 sd (t = 12.71, n = 2) to ±2.5 sd (t = 4.30, n = 3). With more cases (plugins, several
start methods) the measurement shrinks to keep the budget, down to MIN_DURATION_S, after which
the estimate grows past the budget and `describe()` says so -- except for `--quick`, which then
drops to one repetition and so becomes a smoke test whose verdict says that no significance can
be given. It also runs only QUICK_WORKLOADS (hello, cpu, io) unless --workload is given: 12 sound
strategies (built-ins and twins) x 3 workloads = 36 runs x about 3.5 s, about 2 minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

CASE_OVERHEAD_S = 1.5  # per run, beyond warm-up and measurement (see the module docstring)
MIN_DURATION_S = 1.0
MAX_DURATION_S = 10.0
STEP_S = 0.5
MAX_REPEAT = 100


@dataclass(frozen=True)
class SuiteSettings:
    repeat: int
    warmup_s: float
    duration_s: float
    budget_s: float
    runs: int  # cases x workloads x repeat
    estimate_s: float  # runs x (warm-up + measurement + CASE_OVERHEAD_S)

    def describe(self) -> str:
        return "%d run(s) of %gs + %gs warm-up, %d repetition(s): about %d min" % (
            self.runs,
            self.duration_s,
            self.warmup_s,
            self.repeat,
            max(1, round(self.estimate_s / 60.0)),
        )


FULL = {"repeat": 3, "warmup_s": 1.0, "budget_s": 600.0}
QUICK = {"repeat": 2, "warmup_s": 0.5, "budget_s": 160.0}  # 20 s of margin under 3 minutes
# The quick suite's workloads (unless --workload is given): no work, CPU-bound and sleep-bound,
# the three that separate processes, threads and event loops most. With the 10 built-ins and the
# 4 twins, all six workloads would not fit 3 minutes even at one repetition.
QUICK_WORKLOADS = ("hello", "cpu", "io")


def interleave(cases: Sequence[T], n: int) -> list[tuple[T, int]]:
    """(case, repetition) in running order: every case once, then every case again, n times.

    For the suite, pass the (workload, case) pairs as `cases`: repetition is the outermost
    loop, so each workload's repetitions are spread over the whole run."""
    if not 1 <= n <= MAX_REPEAT:
        raise ValueError("--repeat must be between 1 and %d (got %r)" % (MAX_REPEAT, n))
    return [(case, repetition) for repetition in range(n) for case in cases]


def estimate_s(runs: int, warmup_s: float, duration_s: float) -> float:
    return runs * (warmup_s + duration_s + CASE_OVERHEAD_S)


def suite_settings(n_cases: int, n_workloads: int, quick: bool = False) -> SuiteSettings:
    """Repeat, warm-up and measurement for `--suite` (or `--quick`) that fit its budget."""
    if n_cases < 1 or n_workloads < 1:
        raise ValueError("the suite needs at least one case and one workload (got %d and %d)" % (n_cases, n_workloads))
    preset = QUICK if quick else FULL
    repeat, warmup_s, budget_s = int(preset["repeat"]), preset["warmup_s"], preset["budget_s"]
    if quick and estimate_s(n_cases * n_workloads * repeat, warmup_s, MIN_DURATION_S) > budget_s:
        repeat = 1  # too many cases for two repetitions in budget: the quick suite stays quick, untested
    runs = n_cases * n_workloads * repeat
    per_run = budget_s / runs - warmup_s - CASE_OVERHEAD_S
    duration_s = min(MAX_DURATION_S, max(MIN_DURATION_S, math.floor(per_run / STEP_S) * STEP_S))
    return SuiteSettings(repeat, warmup_s, duration_s, budget_s, runs, estimate_s(runs, warmup_s, duration_s))
