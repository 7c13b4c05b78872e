"""Interleaved repetitions and the suite's time budget (pure arithmetic, no servers)."""

from __future__ import annotations

import pytest

from harness.results.repeat import CASE_OVERHEAD_S, MIN_DURATION_S, estimate_s, interleave, suite_settings


def test_interleave_runs_every_case_before_repeating_any() -> None:
    assert interleave(["A", "B", "C"], 2) == [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("C", 1)]
    assert interleave(["A"], 1) == [("A", 0)]
    with pytest.raises(ValueError, match="--repeat must be between 1 and"):
        interleave(["A"], 0)


def test_the_suite_fits_its_budgets_with_the_built_in_strategies() -> None:
    full = suite_settings(n_cases=4, n_workloads=6)
    assert (full.repeat, full.runs) == (3, 72)
    assert 0.8 * 600 <= full.estimate_s <= 600
    quick = suite_settings(n_cases=4, n_workloads=6, quick=True)
    assert quick.repeat >= 2  # the fewest that allow a significance test
    assert quick.estimate_s < 180
    assert quick.estimate_s == estimate_s(quick.runs, quick.warmup_s, quick.duration_s)
    assert quick.estimate_s == quick.runs * (quick.warmup_s + quick.duration_s + CASE_OVERHEAD_S)


def test_more_cases_shorten_the_measurement_down_to_a_floor() -> None:
    durations = [suite_settings(n, 6).duration_s for n in (4, 6, 8, 40)]
    assert durations == sorted(durations, reverse=True)
    big = suite_settings(40, 6)
    assert big.duration_s == MIN_DURATION_S and big.estimate_s > big.budget_s
    assert "about %d min" % round(big.estimate_s / 60) in big.describe()
    with pytest.raises(ValueError, match="at least one case"):
        suite_settings(0, 6)
