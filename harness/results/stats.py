"""Statistics on repetitions: mean, spread, 95 % confidence interval, and whether two cases differ.

`--repeat N` runs each case N times with a fresh server (pyperf's "processes"); this module turns
those N figures into the summaries of a results file (`summarize`) and into the
"no significant difference" / "significant: faster" wording of `compare` and the verdict
(`significant`). Pure functions on numbers and records: no I/O, no servers.

Which test decides, and why (pyperf uses Student's two-sample t with pooled variance):
- **Welch's t-test** on throughput decides by default. Repetitions are few (2-10), and at that
  size a rank test cannot speak: the smallest two-sided p that Mann-Whitney U can reach is
  2/C(n1+n2, n1), i.e. 0.33 with 2+2 repetitions and 0.10 with 3+3, so with `--repeat 3` it
  would call a tenfold gap "no significant difference". Welch's t keeps power at n = 2-3 and,
  unlike pyperf's pooled t, does not assume equal variances: a process pool's throughput
  varies far more between runs than a thread pool's. Its p-value uses Welch-Satterthwaite's
  (fractional) degrees of freedom, exactly, not a t table.
- **Mann-Whitney U** (`test="mann-whitney"`) is there for larger N, where it is robust to the
  occasional repetition spoiled by another process on a shared machine; exact below
  n1 n2 = 10,000 without ties, an exact permutation test with ties for up to 50,000 splits,
  else scipy's normal approximation.
- With fewer than 2 repetitions on either side nothing is tested: "no significance can be
  given with one repetition".

The confidence interval of a mean is mean ± t(0.975, n-1) · sd / √n with the exact Student
quantile (`distributions.t_quantile`), so it is right for n = 2 (t = 12.71) as for n = 30.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import distributions as dist

CONFIDENCE = 0.95
ALPHA = 0.05
WELCH = "Welch's t-test"
MANN_WHITNEY = "Mann-Whitney U"
TESTS = {"welch": WELCH, "mann-whitney": MANN_WHITNEY}

NO_DIFFERENCE = "no significant difference"
FASTER = "significant: faster"
SLOWER = "significant: slower"
ONE_REPETITION = "no significance can be given with one repetition"


@dataclass(frozen=True)
class StatTest:
    statistic: float  # t (mean a - mean b over its standard error, scipy's sign) or U of sample a
    p: float  # two-sided
    df: float | None = None  # Welch-Satterthwaite degrees of freedom (t test only)
    method: str = ""  # how p was computed: "t", "exact", "permutation", "asymptotic"


@dataclass(frozen=True)
class Comparison:
    """Sample b (the candidate) against sample a (the baseline)."""

    test: str  # WELCH, MANN_WHITNEY, or "" when no test could be made
    p: float | None
    statistic: float | None
    significant: bool
    verdict: str  # NO_DIFFERENCE, FASTER, SLOWER or ONE_REPETITION
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    alpha: float = ALPHA
    min_change: float = 0.0

    @property
    def ratio(self) -> float | None:
        """mean b / mean a, when both exist and a is not 0."""
        if self.mean_a is None or self.mean_b is None or self.mean_a == 0:
            return None
        return self.mean_b / self.mean_a

    def evidence(self) -> str:
        """The test behind the verdict, e.g. "Welch's t-test, p = 0.41, n = 5 + 5"; "" without one."""
        if self.p is None:
            return ""
        text = "%s, %s, n = %d + %d" % (self.test, format_p(self.p), self.n_a, self.n_b)
        ratio = self.ratio
        if not self.significant and self.p < self.alpha and ratio is not None:  # below min_change
            text += ", change %+.1f %% under the %g %% minimum" % (100 * (ratio - 1), 100 * self.min_change)
        return text

    def describe(self) -> str:
        """The verdict with its evidence, e.g. "no significant difference (Welch's t-test, p = 0.41, n = 5 + 5)"."""
        return "%s (%s)" % (self.verdict, self.evidence()) if self.p is not None else self.verdict


def format_p(p: float) -> str:
    """ "p = 0.041", or "p < 0.001" below what a handful of repetitions can support."""
    return "p = %.2g" % p if p >= 0.001 else "p < 0.001"


def _checked(values: Iterable[float], what: str) -> list[float]:
    checked = [float(v) for v in values]
    if not all(math.isfinite(v) for v in checked):
        raise ValueError("%s must be finite numbers (got %r)" % (what, checked))
    return checked


def describe(values: Iterable[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """{"mean", "sd", "ci95", "values"} of the repetitions' figures, as a results file holds them.

    sd is the sample standard deviation (n - 1); with fewer than 2 values sd and ci95 are None
    (JSON null): one figure has no spread, and printing 0 would claim a precision never measured.
    With no values at all, mean is None too."""
    data = _checked(values, "repetition values")
    if not data:
        return {"mean": None, "sd": None, "ci95": None, "values": []}
    mean = statistics.fmean(data)
    if len(data) < 2:
        return {"mean": mean, "sd": None, "ci95": None, "values": data}
    sd = statistics.stdev(data)
    half = dist.t_quantile(0.5 + confidence / 2.0, len(data) - 1) * sd / math.sqrt(len(data))
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "values": data}


def welch_t(a: Sequence[float], b: Sequence[float]) -> StatTest:
    """Welch's unequal-variances t-test, two-sided (scipy.stats.ttest_ind(a, b, equal_var=False))."""
    a, b = _checked(a, "sample a"), _checked(b, "sample b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs at least 2 values on each side (got %d and %d)" % (len(a), len(b)))
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    sa, sb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if sa + sb == 0:  # no spread at all: the means are either the same or exactly different
        same = mean_a == mean_b
        return StatTest(0.0 if same else math.copysign(math.inf, mean_a - mean_b), 1.0 if same else 0.0, None, "t")
    df = (sa + sb) ** 2 / (sa * sa / (len(a) - 1) + sb * sb / (len(b) - 1))
    t = (mean_a - mean_b) / math.sqrt(sa + sb)
    return StatTest(t, dist.t_two_sided_p(t, df), df, "t")


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> StatTest:
    """Mann-Whitney U, two-sided; the statistic is U of sample a (scipy's convention)."""
    a, b = _checked(a, "sample a"), _checked(b, "sample b")
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("Mann-Whitney U needs at least 1 value on each side (got %d and %d)" % (n1, n2))
    ranks, groups = dist.midranks(a + b)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    tied = any(size > 1 for size in groups)
    if not tied and n1 * n2 <= dist.MAX_EXACT_U:
        return StatTest(u, dist.u_exact_p(u, n1, n2), None, "exact")
    if tied and math.comb(n1 + n2, n1) <= dist.MAX_PERMUTATIONS:
        return StatTest(u, dist.u_permutation_p(ranks, n1), None, "permutation")
    return StatTest(u, dist.u_normal_p(u, n1, n2, groups), None, "asymptotic")


def significant(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = ALPHA,
    test: str = "welch",
    higher_is_better: bool = True,
    min_change: float = 0.0,
) -> Comparison:
    """Is b different from a? For throughput (higher is better) a higher b is "faster"; for a
    latency pass higher_is_better=False. `test` is "welch" (default, see the module) or
    "mann-whitney". `min_change` (a fraction, as pyperf's --min-speed) calls a change smaller
    than that "no significant difference" whatever p says: two runs made minutes apart on a
    shared machine differ by a few per cent for reasons that are not the code."""
    if test not in TESTS:
        raise ValueError("test must be one of %s (got %r)" % (", ".join(TESTS), test))
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be between 0 and 1 (got %r)" % (alpha,))
    if not 0.0 <= min_change < 1.0:
        raise ValueError("min_change must be a fraction from 0 up to 1 (got %r)" % (min_change,))
    a, b = _checked(a, "sample a"), _checked(b, "sample b")
    mean_a = statistics.fmean(a) if a else None
    mean_b = statistics.fmean(b) if b else None
    if len(a) < 2 or len(b) < 2:
        return Comparison("", None, None, False, ONE_REPETITION, len(a), len(b), mean_a, mean_b, alpha)
    result = welch_t(a, b) if test == "welch" else mann_whitney_u(a, b)
    is_significant = result.p < alpha and mean_a != mean_b
    if is_significant and min_change and mean_a and mean_b:
        is_significant = abs(mean_b / mean_a - 1.0) >= min_change
    if not is_significant:
        verdict = NO_DIFFERENCE
    else:
        verdict = FASTER if ((mean_b or 0.0) > (mean_a or 0.0)) == higher_is_better else SLOWER
    return Comparison(
        TESTS[test],
        result.p,
        result.statistic,
        is_significant,
        verdict,
        len(a),
        len(b),
        mean_a,
        mean_b,
        alpha,
        min_change,
    )


# -- summaries of a run's records ---------------------------------------------------------------


def record_value(record: Any, name: str, default: Any = None) -> Any:
    """A record's field, from a StrategyRecord or from its JSON dict (a schema 1 file lacks
    the newer fields: they get the default)."""
    value = record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)
    return default if value is None else value


def case_names(records: Sequence[Any]) -> list[str]:
    """The table's case name of each record: the strategy, then the start method and the
    server's Python only where those vary across the run (as harness.results.table does)."""
    methods = {record_value(r, "start_method") for r in records if record_value(r, "start_method")}
    pythons = {record_value(r, "python", "") for r in records}
    names = []
    for r in records:
        parts = [str(record_value(r, "strategy", "?"))]
        if len(methods) > 1 and record_value(r, "start_method"):
            parts.append(str(record_value(r, "start_method")))
        if len(pythons) > 1 and record_value(r, "python"):
            parts.append("py" + str(record_value(r, "python")))
        names.append("/".join(parts))
    return names


def level_label(level: Mapping[str, Any]) -> str:
    """{"concurrency": 32} -> "concurrency=32"; {} -> ""."""
    return ",".join(
        "%s=%s" % (key, ("%g" % value) if isinstance(value, float) else value) for key, value in sorted(level.items())
    )


def summarize(records: Iterable[Any]) -> list[dict[str, Any]]:
    """RunRecord.summaries: one dict per (case, workload, level), over its repetitions.

    Records are StrategyRecords or their JSON dicts, in any order; groups keep the order in
    which they first appear and their repetitions are sorted by `repetition`. Throughput counts
    every repetition (a failed one measured 0 ok/s, and its status says so); p50/p99 only those
    that have the percentile (no ok response: none). Hangs are summed, never averaged: one hang
    in any repetition is a finding."""
    records = list(records)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for name, record in zip(case_names(records), records, strict=True):
        level = dict(record_value(record, "level", {}))
        key = (name, str(record_value(record, "workload", "hello")), json.dumps(level, sort_keys=True))
        groups.setdefault(key, []).append(record)
    summaries = []
    for (name, workload, level_json), members in groups.items():
        members.sort(key=lambda r: int(record_value(r, "repetition", 0)))
        first = members[0]
        summaries.append(
            {
                "case": name,
                "strategy": str(record_value(first, "strategy", "?")),
                "start_method": record_value(first, "start_method"),
                "python": str(record_value(first, "python", "")),
                "workload": workload,
                "level": json.loads(level_json),
                "n": len(members),
                "throughput_rps": describe(float(record_value(r, "throughput_rps", 0.0)) for r in members),
                "p50_us": describe(_percentiles(members, "p50")),
                "p99_us": describe(_percentiles(members, "p99")),
                "hangs": sum(int(record_value(r, "requests", {}).get("hang", 0)) for r in members),
                "statuses": [str(record_value(r, "status", "?")) for r in members],
            }
        )
    return summaries


def _percentiles(records: Sequence[Any], key: str) -> list[float]:
    """The percentile of each repetition that has one: with no ok response the histogram's
    summary is all zeros, which is no latency at all."""
    values = (record_value(record, "latency_us", {}).get(key) for record in records)
    return [float(value) for value in values if value]
