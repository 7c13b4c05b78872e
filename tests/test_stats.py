"""The statistics of repetitions, against values computed by hand (closed forms, enumeration) and,
where scipy is installed, against scipy for many samples."""

from __future__ import annotations

import math
import random

import pytest

from harness.results import distributions as dist
from harness.results.records import StrategyRecord
from harness.results.stats import (
    FASTER,
    MANN_WHITNEY,
    NO_DIFFERENCE,
    ONE_REPETITION,
    SLOWER,
    WELCH,
    case_names,
    describe,
    mann_whitney_u,
    significant,
    summarize,
    welch_t,
)

# Two-sided 95 % critical values of Student's t (any printed t table; scipy.stats.t.ppf(0.975, df)).
T_975 = {
    1: 12.706204736174694,
    2: 4.302652729749462,
    3: 3.1824463052837078,
    4: 2.7764451051977934,
    10: 2.228138851986274,
}


@pytest.mark.parametrize(("df", "expected"), sorted(T_975.items()))
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert dist.t_quantile(0.975, df) == pytest.approx(expected, rel=1e-10)
    assert dist.t_quantile(0.025, df) == pytest.approx(-expected, rel=1e-10)


def test_t_tail_closed_forms() -> None:
    # df = 1 is Cauchy: P(|T| >= t) = 1 - 2 atan(t) / pi; df = 2: 1 - t / sqrt(2 + t^2).
    for t in (0.1, 1.0, 3.0, 40.0):
        assert dist.t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-10)
        assert dist.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)
    assert dist.t_two_sided_p(0.0, 3) == 1.0
    assert dist.t_two_sided_p(math.inf, 3) == 0.0


def test_describe_mean_sd_and_interval_by_hand() -> None:
    # mean 2.5, sample sd sqrt(5/3), half-width t(0.975, 3) * sd / 2
    result = describe([1, 2, 3, 4])
    half = T_975[3] * math.sqrt(5 / 3) / 2
    assert result["mean"] == 2.5
    assert result["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert result["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    assert result["values"] == [1.0, 2.0, 3.0, 4.0]


def test_describe_one_and_no_values_claim_no_spread() -> None:
    assert describe([7.0]) == {"mean": 7.0, "sd": None, "ci95": None, "values": [7.0]}
    assert describe([]) == {"mean": None, "sd": None, "ci95": None, "values": []}
    with pytest.raises(ValueError, match="finite"):
        describe([1.0, math.nan])


def test_welch_by_hand() -> None:
    # a: mean 2.5, var 5/3; b: mean 5, var 20/3; se^2 = 25/12 so t = -sqrt(3), df = 75/17.
    result = welch_t([1, 2, 3, 4], [2, 4, 6, 8])
    assert result.statistic == pytest.approx(-math.sqrt(3))
    assert result.df == pytest.approx(75 / 17)
    assert result.p == pytest.approx(0.15158050484530375, rel=1e-9)  # scipy 1.17 ttest_ind(equal_var=False)


def test_welch_without_spread() -> None:
    assert welch_t([5, 5], [5, 5]).p == 1.0
    assert welch_t([5, 5], [6, 6]).p == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        welch_t([1.0], [1.0, 2.0])


def test_u_null_distribution_is_the_gaussian_binomial() -> None:
    # 2 + 2: the 6 orderings give U = 0, 1, 2, 2, 3, 4.
    assert dist.u_counts(2, 2) == [1, 1, 2, 1, 1]
    counts = dist.u_counts(4, 6)
    assert sum(counts) == math.comb(10, 4)
    assert counts == counts[::-1]  # symmetric without ties


def test_mann_whitney_exact_by_hand() -> None:
    # Fully separated samples: only 1 of C(n1+n2, n1) orderings is as extreme on each side.
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]).p == pytest.approx(2 / 20)
    result = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert (result.statistic, result.method) == (0.0, "exact")
    assert result.p == pytest.approx(2 / 252)
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).statistic == 25.0


def test_mann_whitney_with_ties_is_an_exact_permutation_test() -> None:
    # Enumerated by hand over the 126 splits: 10 have U <= 3 (the observed), so p = 2 * 10/126.
    result = mann_whitney_u([1, 2, 2, 3], [2, 3, 3, 4, 5])
    assert result.method == "permutation"
    assert result.statistic == 3.0
    assert result.p == pytest.approx(20 / 126)


def test_mann_whitney_large_samples_use_the_normal_approximation() -> None:
    a = list(range(0, 200, 2))
    b = [x + 7 for x in range(0, 220, 2)]
    result = mann_whitney_u(a, b)
    assert result.method == "asymptotic"
    assert result.statistic == 4656.0
    assert result.p == pytest.approx(0.05511687056718362, rel=1e-9)  # scipy 1.17 method="asymptotic"
    assert mann_whitney_u([3.0] * 200, [3.0] * 200).p == 1.0


def test_significant_says_faster_or_slower_of_b_against_a() -> None:
    baseline = [1010.0, 1120.0, 980.0]
    candidate = [1810.0, 2040.0, 1950.0]
    up = significant(baseline, candidate)
    assert (up.test, up.significant, up.verdict) == (WELCH, True, FASTER)
    assert up.p == pytest.approx(0.000826286905567764, rel=1e-9)  # scipy 1.17
    assert up.ratio == pytest.approx(sum(candidate) / sum(baseline))
    assert up.describe() == "significant: faster (Welch's t-test, p < 0.001, n = 3 + 3)"
    assert significant([1, 2, 3, 4], [2, 4, 6, 8]).evidence() == "Welch's t-test, p = 0.15, n = 4 + 4"
    assert significant(candidate, baseline).verdict == SLOWER
    # For a latency, higher is worse.
    assert significant(baseline, candidate, higher_is_better=False).verdict == SLOWER


def test_significant_no_difference_and_one_repetition() -> None:
    same = significant([1000.0, 1100.0, 950.0, 1040.0], [1020.0, 990.0, 1080.0, 1010.0])
    assert (same.significant, same.verdict) == (False, NO_DIFFERENCE)
    assert same.describe().startswith("no significant difference (Welch's t-test, p = ")
    one = significant([1000.0], [2000.0, 2100.0])
    assert (one.significant, one.verdict, one.p, one.test) == (False, ONE_REPETITION, None, "")
    assert one.describe() == "no significance can be given with one repetition"


def test_a_change_below_min_change_is_no_difference() -> None:
    a, b = [1000.0, 1001.0, 1002.0], [1030.0, 1031.0, 1032.0]  # +3 %, very consistent: p tiny
    assert significant(a, b).verdict == FASTER
    held = significant(a, b, min_change=0.05)
    assert held.verdict == NO_DIFFERENCE
    assert held.describe() == (
        "no significant difference (Welch's t-test, p < 0.001, n = 3 + 3, change +3.0 % under the 5 % minimum)"
    )
    assert significant(a, b, min_change=0.02).verdict == FASTER
    with pytest.raises(ValueError, match="min_change"):
        significant(a, b, min_change=5)


def test_mann_whitney_cannot_speak_with_three_repetitions() -> None:
    # Why Welch decides by default: 3 + 3 fully separated values give U's smallest p, 0.1.
    a, b = [100.0, 101.0, 102.0], [1000.0, 1001.0, 1002.0]
    assert significant(a, b, test="mann-whitney").verdict == NO_DIFFERENCE
    assert significant(a, b, test="mann-whitney").test == MANN_WHITNEY
    assert significant(a, b).verdict == FASTER


def test_significant_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="test must be one of"):
        significant([1, 2], [3, 4], test="anova")
    with pytest.raises(ValueError, match="alpha"):
        significant([1, 2], [3, 4], alpha=1.5)


@pytest.mark.slow  # importing scipy.stats alone takes 1-4 s on a busy 2-core machine
def test_against_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for df in (1, 1.5, 2, 3.7, 9, 60, 500):
        for q in (0.6, 0.9, 0.975, 0.995):
            assert dist.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)
    for _ in range(40):
        n1, n2 = rng.randint(2, 9), rng.randint(2, 9)
        a = [rng.gauss(100, 10) for _ in range(n1)]
        b = [rng.gauss(100 + rng.choice([0, 15, 40]), rng.choice([2, 10, 30])) for _ in range(n2)]
        ours, theirs = welch_t(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
        assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9)
        assert ours.p == pytest.approx(theirs.pvalue, rel=1e-8)
        ours_u, theirs_u = mann_whitney_u(a, b), scipy_stats.mannwhitneyu(a, b, method="exact")
        assert ours_u.statistic == theirs_u.statistic
        assert ours_u.p == pytest.approx(theirs_u.pvalue, rel=1e-12)


# -- summaries --------------------------------------------------------------------------------------


def _record(strategy: str, repetition: int, rps: float, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "strategy": strategy,
        "status": "completed",
        "start_method": None,
        "python": "3.11.7",
        "throughput_rps": rps,
        "latency_us": {"p50": int(rps), "p90": 0, "p99": 2 * int(rps), "p999": 0, "max": 0},
        "requests": {"ok": 100, "hang": 0},
        "workload": "cpu",
        "level": {},
        "repetition": repetition,
    }
    record.update(extra)
    return record


def test_summarize_groups_repetitions_in_the_contract_shape() -> None:
    records = [
        _record("threads", 1, 1100.0, requests={"ok": 100, "hang": 2}),
        _record("gevent", 0, 900.0),
        _record("threads", 0, 1000.0, status="crashed", latency_us={"p50": 0, "p99": 0}),
        _record("threads", 2, 1200.0, requests={"ok": 100, "hang": 1}),
        _record("threads", 0, 50.0, workload="io"),
    ]
    summaries = summarize(records)
    assert [(s["case"], s["workload"], s["n"]) for s in summaries] == [
        ("threads", "cpu", 3),
        ("gevent", "cpu", 1),
        ("threads", "io", 1),
    ]
    threads = summaries[0]
    assert set(threads) == {
        "case",
        "strategy",
        "start_method",
        "python",
        "workload",
        "level",
        "n",
        "throughput_rps",
        "p50_us",
        "p99_us",
        "hangs",
        "statuses",
    }
    assert threads["throughput_rps"]["values"] == [1000.0, 1100.0, 1200.0]  # repetition order
    assert threads["throughput_rps"]["mean"] == 1100.0
    assert threads["p50_us"]["values"] == [1100.0, 1200.0]  # the crashed repetition had no latency
    assert threads["hangs"] == 3  # summed, never averaged
    assert threads["statuses"] == ["crashed", "completed", "completed"]
    assert summaries[1]["throughput_rps"]["sd"] is None


def test_summarize_separates_levels_and_reads_schema_1_records() -> None:
    levels = summarize([_record("threads", 0, 1.0, level={"concurrency": 8}), _record("threads", 0, 2.0, level={})])
    assert [s["level"] for s in levels] == [{"concurrency": 8}, {}]
    old = StrategyRecord(strategy="threads", status="completed", throughput_rps=5.0, python="3.11.7")
    (summary,) = summarize([old, old])
    assert (summary["workload"], summary["level"], summary["n"]) == ("hello", {}, 2)


def test_case_names_follow_the_table() -> None:
    records = [
        _record("asyncio-executor", 0, 1.0, start_method="fork"),
        _record("asyncio-executor", 0, 1.0, start_method="spawn"),
        _record("threads", 0, 1.0),
    ]
    assert case_names(records) == ["asyncio-executor/fork", "asyncio-executor/spawn", "threads"]
    assert case_names(records[:1] + records[2:]) == ["asyncio-executor", "threads"]
