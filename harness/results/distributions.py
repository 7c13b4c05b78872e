"""Exact small-sample distributions for the tests in `stats`: Student's t and Mann-Whitney U.

Written out rather than taken from scipy so that a verdict never depends on whether an optional
package is installed, and because repetitions are few (2-10): exactly where normal
approximations and pyperf-style t tables (integer degrees of freedom only; Welch's are not
integers) are least accurate.

- Student's t: its CDF is a regularized incomplete beta function, evaluated by the continued
  fraction of Numerical Recipes §6.4 (modified Lentz) to about 1e-13 relative; quantiles by
  bisection on that CDF. Checked against scipy.stats.t in tests/test_stats.py.
- Mann-Whitney U without ties: the exact null distribution, whose counts are the coefficients
  of the Gaussian binomial coefficient [n1+n2 choose n1]_q, computed with integers.
- With ties and few values: an exact permutation test (every split of the pooled values).
- Otherwise the normal approximation with tie and continuity corrections (scipy's
  'asymptotic').
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

_EPS = 1e-16
_TINY = 1e-300
MAX_EXACT_U = 10_000  # n1*n2 above this: normal approximation (the exact counts get slow)
MAX_PERMUTATIONS = 50_000  # splits enumerated for an exact test with ties (8 + 8 values = 12,870)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b); `y` = 1 - x when the caller has
    it more precisely than 1 - x would give."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    if not df > 0:
        raise ValueError("degrees of freedom must be more than 0 (got %r)" % (df,))
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2)))


def t_quantile(q: float, df: float) -> float:
    """The `q` quantile of Student's t (0 < q < 1), e.g. t_quantile(0.975, 4) = 2.7764…"""
    if not 0.0 < q < 1.0:
        raise ValueError("a quantile needs 0 < q < 1 (got %r)" % (q,))
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    target = 2.0 * (1.0 - q)  # two-sided tail beyond the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target and hi < 1e300:
        lo, hi = hi, hi * 2.0
    for _ in range(2000):  # bisection: the tail is monotone; stops at float resolution
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def midranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks 1..n of `values` (ties get the mean of their ranks) and the sizes of tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    groups = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2.0 + 1.0
        groups.append(end - start + 1)
        start = end + 1
    return ranks, groups


def u_counts(n1: int, n2: int) -> list[int]:
    """counts[u] = number of the C(n1+n2, n1) orderings whose U statistic is u, without ties:
    the coefficients of the Gaussian binomial prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i)."""
    size = n1 * n2 + 1
    poly = [0] * size
    poly[0] = 1
    for i in range(1, n1 + 1):
        for u in range(size - 1, n2 + i - 1, -1):  # multiply by (1 - q^(n2+i)), highest first
            poly[u] -= poly[u - n2 - i]
        for u in range(i, size):  # divide by (1 - q^i): exact, so the integers stay integers
            poly[u] += poly[u - i]
    return poly


def u_exact_p(u: float, n1: int, n2: int) -> float:
    """Two-sided exact p of U (no ties): 2 P(U <= min(u, n1 n2 - u)), at most 1."""
    counts = u_counts(n1, n2)
    low = min(u, n1 * n2 - u)
    tail = sum(counts[: math.floor(low + 1e-9) + 1])
    return min(1.0, 2.0 * tail / math.comb(n1 + n2, n1))


def u_permutation_p(ranks: Sequence[float], n1: int) -> float:
    """Two-sided exact permutation p of U given the pooled (mid)ranks, the first n1 being
    sample 1: twice the smaller tail over every split, at most 1 (scipy's convention for a
    two-sided permutation p; with ties the null distribution need not be symmetric)."""
    offset = n1 * (n1 + 1) / 2.0
    observed = sum(ranks[:n1]) - offset
    below = above = total = 0
    for chosen in itertools.combinations(ranks, n1):
        u = sum(chosen) - offset
        total += 1
        below += u <= observed + 1e-9
        above += u >= observed - 1e-9
    return min(1.0, 2.0 * min(below, above) / total)


def u_normal_p(u: float, n1: int, n2: int, tie_groups: Sequence[int]) -> float:
    """Normal approximation with tie and continuity corrections (as scipy's 'asymptotic')."""
    n = n1 + n2
    ties = sum(t * t * t - t for t in tie_groups)
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every value equal: nothing tells the samples apart
        return 1.0
    z = (max(u, n1 * n2 - u) - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return min(1.0, normal_two_sided_p(max(z, 0.0)))
