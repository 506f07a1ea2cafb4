"""The statistics of the reports (reproduce/) and benchmarks (benchmarks/): mean and sample
standard deviation, the median, and two-sided t-tests between two codes or methods (Welch's for
independent samples, the paired test for runs matched by seed), with scipy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

ALPHA = 0.05


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _result(a: Sequence[float], b: Sequence[float], t: float, p: float, note: str = "") -> dict:
    diff = statistics.fmean(a) - statistics.fmean(b) if a and b else math.nan
    return {"diff": diff, "t": t, "p": p, "note": note}


def _constant(a: Sequence[float], b: Sequence[float]) -> dict | None:
    """Both samples constant: p is 1 when they are equal, NaN when not (no variance to test)."""
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        same = a[0] == b[0]
        return _result(a, b, 0.0 if same else math.nan, 1.0 if same else math.nan, "both constant")
    return None


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided Welch t-test (``scipy.stats.ttest_ind``, ``equal_var=False``) of mean(a) vs
    mean(b): ``diff`` (mean a - mean b), ``t``, ``p``, and a ``note`` where no test is possible
    (p NaN)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return _result(a, b, math.nan, math.nan, "fewer than 2 values per sample")
    constant = _constant(a, b)
    if constant is not None:
        return constant
    res = stats.ttest_ind(a, b, equal_var=False)
    return _result(a, b, float(res.statistic), float(res.pvalue))


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of runs matched pairwise (a[i] and
    b[i]: the same seed), as :func:`welch` reports it."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"a paired test needs matched runs, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return _result(a, b, math.nan, math.nan, "fewer than 2 pairs")
    diffs = [x - y for x, y in zip(a, b)]
    if statistics.pvariance(diffs) == 0:
        same = diffs[0] == 0
        return _result(a, b, 0.0 if same else math.nan, 1.0 if same else math.nan,
                       "constant differences")
    res = stats.ttest_rel(a, b)
    return _result(a, b, float(res.statistic), float(res.pvalue))


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` t-interval of the mean paired difference a[i] - b[i] (NaN below 2 pairs)."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return math.nan, math.nan
    m, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    half = float(stats.t.ppf(0.5 + level / 2, len(diffs) - 1)) * se
    return m - half, m + half


def detectable_difference(a: Sequence[float], b: Sequence[float], power: float = 0.8,
                          alpha: float = ALPHA) -> float:
    """The difference of means a two-sided Welch test at ``alpha`` would detect with ``power``,
    given these spreads: (t_{1-alpha/2} + t_{power}) x standard error, at Welch's degrees of
    freedom."""
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * math.sqrt(va + vb))
