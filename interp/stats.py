"""Statistics used across the suite: confidence intervals (bootstrap over units, t-intervals
over seeds), tests over units on scipy, and the one cosine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # torch loads on first use: the hypothesis scripts import this module and never need it
    import torch


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """cos(a, b) along `dim` (broadcasting), in float64; NaN where either vector is zero (an
    undefined direction is not an orthogonal one), clamped to [-1, 1]."""
    import torch

    a, b = a.double(), b.double()
    denom = a.norm(dim=dim) * b.norm(dim=dim)
    cos = (a * b).sum(dim) / denom.clamp_min(1e-300)
    return torch.where(denom > 0, cos.clamp(-1, 1), torch.full_like(cos, float("nan")))


@dataclass(frozen=True)
class Estimate:
    """A mean with a confidence interval over `n` units (questions, seeds, batches...)."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> Estimate:
    """Percentile bootstrap of the mean over units (resampled with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Estimate(mean, mean, mean, int(x.size), "bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    # Percentile intervals can miss the sample mean for tiny, skewed samples; widen to include it.
    return Estimate(mean, float(min(lo, mean)), float(max(hi, mean)), int(x.size), "bootstrap")


def t_interval(values: Sequence[float] | np.ndarray, ci: float = 0.95) -> Estimate:
    """Student-t interval of the mean (for means over independent seeds)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2 or np.allclose(x, x[0]):
        return Estimate(mean, mean, mean, int(x.size), "t")
    lo, hi = stats.t.interval(ci, df=x.size - 1, loc=mean, scale=stats.sem(x))
    return Estimate(mean, float(lo), float(hi), int(x.size), "t")


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> Estimate:
    """Bootstrap CI of mean(a - b) over paired units (e.g. the same questions)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return bootstrap_ci(a - b, n_boot=n_boot, ci=ci, seed=seed)


# ---------------------------------------------------------------- tests over units (scipy)


@dataclass(frozen=True)
class Comparison:
    """An effect with its CI and a test: difference a - b (or a mean of paired differences)."""

    statistic_name: str
    statistic: float
    effect: float
    lo: float
    hi: float
    p: float
    n: int


def welch(a: Sequence[float], b: Sequence[float], ci: float = 0.95) -> Comparison:
    """Welch t-test and Welch-Satterthwaite interval for mean(a) - mean(b) (scipy.stats.ttest_ind)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    diff, nan = float(x.mean() - y.mean()), float("nan")
    if x.size < 2 or y.size < 2:
        return Comparison("welch_t", nan, diff, nan, nan, nan, int(x.size + y.size))
    if x.var() == 0 and y.var() == 0:  # no spread at all: the difference is exact, no test
        return Comparison("welch_t", nan, diff, diff, diff, nan, int(x.size + y.size))
    res = stats.ttest_ind(x, y, equal_var=False)
    lo, hi = res.confidence_interval(ci)
    return Comparison("welch_t", float(res.statistic), diff, float(lo), float(hi), float(res.pvalue),
                      int(x.size + y.size))  # fmt: skip


def sign_flip_p(d: Sequence[float], n_perm: int = 20000, seed: int = 0) -> float:
    """Two-sided sign-flip (paired permutation) p for mean(d) = 0: P(|mean of flipped d| >= |mean d|).

    scipy.stats.permutation_test over the signs; exact when 2^n <= n_perm. Assumes the paired
    differences are symmetric about 0 under the null."""
    x = np.asarray(d, float)
    if x.size == 0:
        return float("nan")
    if np.all(x == 0):
        return 1.0
    res = stats.permutation_test(
        (x,), lambda v, axis: np.abs(np.mean(v, axis=axis)), permutation_type="samples",
        alternative="greater", n_resamples=n_perm, random_state=seed, vectorized=True,
    )  # fmt: skip
    return float(res.pvalue)


def paired_t(d: Sequence[float]) -> float:
    """The one-sample t statistic of paired differences (nan when undefined)."""
    x = np.asarray(d, float)
    if x.size < 2 or x.std(ddof=1) == 0:
        return float("nan")
    return float(stats.ttest_1samp(x, 0.0).statistic)


def wilson(share: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy.stats.binomtest; sensible at 0 and 1)."""
    if n <= 0 or not np.isfinite(share):
        return float("nan"), float("nan")
    res = stats.binomtest(int(round(share * n)), n).proportion_ci(confidence_level=ci, method="wilson")
    return float(res.low), float(res.high)

