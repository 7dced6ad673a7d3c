"""Confidence intervals used across the suite (bootstrap over units, t-intervals over seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


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
