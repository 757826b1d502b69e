"""search.report.stats against scipy and hand-computed numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from search.report import stats

A = [812.0, 790.5, 845.2, 760.1, 830.0]
B = [560.3, 610.8, 498.2, 640.0, 575.5, 530.9, 601.2]


def test_summary_matches_scipy_t_interval():
    s = stats.summarize(A)
    lo, hi = sp.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sp.sem(A))
    assert s.n == 5
    assert s.mean == pytest.approx(807.56)
    assert s.std == pytest.approx(np.std(A, ddof=1))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi))
    assert s.half_width == pytest.approx(2.7764451 * s.std / math.sqrt(5), rel=1e-6)


def test_summary_of_few_values_and_non_finite():
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)
    one = stats.summarize([3.0, math.nan])
    assert (one.n, one.mean) == (1, 3.0) and math.isnan(one.std) and math.isnan(one.ci_low)
    two = stats.summarize([1.0, 3.0, math.inf])
    assert (two.n, two.mean, two.std) == (2, 2.0, pytest.approx(math.sqrt(2)))


def test_welch_matches_scipy():
    w = stats.welch_t_test(A, B)
    ref = sp.ttest_ind(A, B, equal_var=False)
    assert w.t == pytest.approx(ref.statistic)
    assert w.p == pytest.approx(ref.pvalue)
    assert w.df == pytest.approx(ref.df)
    assert w.mean_diff == pytest.approx(np.mean(A) - np.mean(B))
    # symmetric: swapping the sides flips t, keeps p
    r = stats.welch_t_test(B, A)
    assert r.t == pytest.approx(-w.t) and r.p == pytest.approx(w.p)


def test_welch_undefined_cases_are_nan_not_errors():
    assert math.isnan(stats.welch_t_test([1.0], B).p)
    assert stats.welch_t_test([1.0], B).mean_diff == pytest.approx(1.0 - np.mean(B))
    assert math.isnan(stats.welch_t_test([], B).mean_diff)
    assert math.isnan(stats.welch_t_test([5.0, 5.0], [5.0, 5.0]).t)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9, 13])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(500, 100, size=n)
    assert stats.iqm(x) == pytest.approx(sp.trim_mean(x, 0.25))


def test_iqm_known_numbers():
    assert stats.iqm([1, 2, 3, 4, 100, 5, 6, 7]) == pytest.approx(4.5)  # cuts 1, 2 and 7, 100
    assert stats.iqm([10, 20]) == pytest.approx(15)                    # nothing to cut
    assert math.isnan(stats.iqm([math.nan]))


def test_iqm_bootstrap_interval_is_deterministic_and_close_to_scipy():
    x = np.random.default_rng(0).normal(700, 80, size=20)
    est = stats.iqm_ci(x, n_boot=4000, seed=3)
    assert est == stats.iqm_ci(x, n_boot=4000, seed=3)
    assert est.value == pytest.approx(sp.trim_mean(x, 0.25))
    assert est.ci_low < est.value < est.ci_high
    ref = sp.bootstrap((x,), lambda s, axis: sp.trim_mean(s, 0.25, axis=axis), n_resamples=4000,
                       method="percentile", random_state=np.random.default_rng(1))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert est.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.15 * width)
    assert est.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.15 * width)


def test_stratified_bootstrap_keeps_each_group_and_constant_data_has_no_width():
    est = stats.iqm_ci([[100.0, 100.0], [900.0, 900.0, 900.0, 900.0]], n_boot=500)
    # every resample holds 2 values of 100 and 4 of 900 (sorted, one cut from each end:
    # 100, 900, 900, 900): the IQM is 700 in every resample
    assert (est.value, est.ci_low, est.ci_high) == (700.0, 700.0, 700.0)


def test_iqm_difference():
    d = stats.iqm_difference_ci(A, B, n_boot=2000, seed=0)
    assert d.value == pytest.approx(stats.iqm(A) - stats.iqm(B))
    assert 0 < d.ci_low < d.value < d.ci_high
    assert math.isnan(stats.iqm_difference_ci([], B).value)


def test_welch_interval_is_scipys_and_holds_the_difference():
    rng = np.random.default_rng(3)
    a, b = rng.normal(5, 1, 7), rng.normal(3, 2, 5)
    lo, hi = stats.welch_interval(a, b)
    w = stats.welch_t_test(a, b)
    assert lo < w.mean_diff < hi
    # half-width = t_{0.975, df} * se with Welch's df
    se = math.sqrt(a.var(ddof=1) / 7 + b.var(ddof=1) / 5)
    assert (hi - lo) / 2 == pytest.approx(sp.t.ppf(0.975, w.df) * se)
    assert all(math.isnan(x) for x in stats.welch_interval([1.0], [2.0, 3.0]))
