"""The one statistics helper of reproduce/ and benchmarks/ (reproduce/stats.py) against hand
computations."""

from __future__ import annotations

import math

import pytest

from reproduce import stats


def test_mean_std_and_median():
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample standard deviation
    assert stats.mean_std([4.0]) == (4.0, None)
    assert stats.median([3.0, 1.0, 2.0, 10.0]) == 2.5


def test_welch_matches_the_hand_computed_statistic_and_df():
    from scipy import stats as sp

    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]
    # means 2 and 5.5, variances 1 and 5/3: se^2 = 1/3 + 5/12 = 0.75
    t = (2 - 5.5) / math.sqrt(0.75)
    df = 0.75**2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    res = stats.welch(a, b)
    assert res["t"] == pytest.approx(t) and res["diff"] == pytest.approx(-3.5)
    assert res["p"] == pytest.approx(2 * sp.t.sf(abs(t), df))
    assert res["p"] != pytest.approx(2 * sp.t.sf(abs(t), 5))  # not Student's pooled df


def test_welch_p_by_hand_with_4_degrees_of_freedom():
    """a = 1,2,3 and b = 4,5,6: t = -3 / sqrt(1/3 + 1/3) = -3.674 with 4 degrees of freedom; for
    4 df the two-sided p is 2 (1/2 - 3/4 x (1 - x^2/3)) with x = |t| / sqrt(4 + t^2) = 0.0213."""
    t = 3 / (2 / 3) ** 0.5
    x = t / (4 + t * t) ** 0.5
    res = stats.welch([1, 2, 3], [4, 5, 6])
    assert res["diff"] == pytest.approx(-3.0)
    assert res["p"] == pytest.approx(2 * (0.5 - 0.75 * x * (1 - x * x / 3)), rel=1e-9)
    assert res["p"] == pytest.approx(0.0213, abs=1e-4)


def test_welch_degenerate_cases():
    assert stats.welch([0.5, 0.5], [0.5, 0.5])["p"] == 1.0
    assert math.isnan(stats.welch([0.5, 0.5], [0.6, 0.6])["p"])
    res = stats.welch([0.5], [0.6, 0.7])
    assert math.isnan(res["p"]) and "fewer than 2" in res["note"]


def test_paired_test_by_hand():
    """Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464 with 2 df; for 2 df the
    two-sided p is 1 - |t| / sqrt(2 + t^2) = 1 - 3.464 / 3.742 = 0.0742."""
    a, b = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]
    res = stats.paired(a, b)
    t = 2 / (1 / math.sqrt(3))
    assert res["t"] == pytest.approx(t) and res["diff"] == pytest.approx(2.0)
    assert res["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert res["p"] < stats.welch(a, b)["p"]  # pairing removes the spread between seeds
    assert stats.paired([1.0, 2.0], [0.0, 1.0])["note"] == "constant differences"
    with pytest.raises(ValueError, match="matched runs"):
        stats.paired([1.0], [1.0, 2.0])


def test_detectable_difference_is_t_quantiles_times_the_welch_standard_error():
    from scipy import stats as sp

    df = 0.75**2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    want = (sp.t.ppf(0.975, df) + sp.t.ppf(0.8, df)) * math.sqrt(0.75)
    assert stats.detectable_difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]) == pytest.approx(want)
    assert stats.detectable_difference([0.5, 0.5], [0.5, 0.5]) == 0.0
