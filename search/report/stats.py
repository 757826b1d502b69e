"""Summary statistics for evaluations over seeds: t-based confidence intervals, Welch's
t-test, and the interquartile mean with a bootstrap confidence interval.

Few seeds (the paper's Table 2 uses a handful) make the mean fragile; the interquartile
mean (IQM, Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice") and a
percentile bootstrap over runs are the robust companions we report beside it. Values that
are not finite (a diverged run's missing return) are dropped before any statistic.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _sp

CONFIDENCE = 0.95


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and the t-based confidence interval of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """n, mean, std and ``mean -/+ t_{(1+c)/2, n-1} * std / sqrt(n)``; NaN where undefined
    (no value: everything; one value: std and interval)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(_sp.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclasses.dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of mean(a) - mean(b), two-sided."""

    mean_diff: float
    t: float
    df: float
    p: float


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> Welch:
    """t = (mean_a - mean_b) / sqrt(va/na + vb/nb), Welch-Satterthwaite degrees of freedom.

    NaN statistics when either side has fewer than two values or both have zero variance
    (nothing to test), but ``mean_diff`` whenever both sides have a value.
    """
    x, y = _finite(a), _finite(b)
    if len(x) == 0 or len(y) == 0:
        return Welch(math.nan, math.nan, math.nan, math.nan)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Welch(diff, math.nan, math.nan, math.nan)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = va + vb
    if se2 == 0:
        return Welch(diff, math.nan, math.nan, math.nan)
    t = diff / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    p = float(2 * _sp.t.sf(abs(t), df))
    return Welch(diff, float(t), float(df), p)


def welch_interval(a: Sequence[float], b: Sequence[float],
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The confidence interval of mean(a) - mean(b) by Welch's t (scipy's own
    ``ttest_ind(equal_var=False).confidence_interval``); NaN where undefined."""
    x, y = _finite(a), _finite(b)
    if len(x) < 2 or len(y) < 2 or (x.var() == 0 and y.var() == 0):
        return math.nan, math.nan
    ci = _sp.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of what is left after cutting ``floor(n/4)`` values from
    each end (as ``scipy.stats.trim_mean(x, 0.25)`` and rliable do)."""
    x = np.sort(_finite(values))
    if len(x) == 0:
        return math.nan
    cut = len(x) // 4
    return float(x[cut:len(x) - cut].mean())


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of every row of a (B, n) matrix at once."""
    n = samples.shape[1]
    cut = n // 4
    return np.sort(samples, axis=1)[:, cut:n - cut].mean(axis=1)


def _resample(groups: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, sum of group sizes): each group resampled with replacement within itself
    (a stratified bootstrap: every task keeps its number of runs)."""
    parts = [g[rng.integers(0, len(g), size=(n_boot, len(g)))] for g in groups]
    return np.concatenate(parts, axis=1)


def _groups(values: Sequence[float] | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """One flat sequence = one group; a sequence of sequences = one group per task."""
    items = list(values)
    if items and np.ndim(items[0]) > 0:
        groups = [_finite(g) for g in items]
    else:
        groups = [_finite(items)]
    return [g for g in groups if len(g)]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile-bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float


def _percentiles(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray],
              values: Sequence[float] | Sequence[Sequence[float]], *, n_boot: int = 2000,
              confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """``statistic`` maps a (B, n) matrix of resamples to B values; groups are resampled
    within themselves. Deterministic for a given ``seed``."""
    groups = _groups(values)
    if not groups:
        return Estimate(math.nan, math.nan, math.nan)
    point = float(statistic(np.concatenate(groups)[None, :])[0])
    boot = statistic(_resample(groups, n_boot, np.random.default_rng(seed)))
    return Estimate(point, *_percentiles(boot, confidence))


def iqm_ci(values: Sequence[float] | Sequence[Sequence[float]], *, n_boot: int = 2000,
           confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """IQM over runs with a (stratified, when given per-task groups) bootstrap interval."""
    return bootstrap(_iqm_rows, values, n_boot=n_boot, confidence=confidence, seed=seed)


def iqm_difference_ci(a: Sequence[float] | Sequence[Sequence[float]],
                      b: Sequence[float] | Sequence[Sequence[float]], *, n_boot: int = 2000,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """IQM(a) - IQM(b) with a bootstrap interval; a and b are resampled independently."""
    ga, gb = _groups(a), _groups(b)
    if not ga or not gb:
        return Estimate(math.nan, math.nan, math.nan)
    point = iqm(np.concatenate(ga)) - iqm(np.concatenate(gb))
    rng = np.random.default_rng(seed)
    boot = _iqm_rows(_resample(ga, n_boot, rng)) - _iqm_rows(_resample(gb, n_boot, rng))
    return Estimate(float(point), *_percentiles(boot, confidence))
