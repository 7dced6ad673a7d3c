"""The statistics the verdicts rest on, against their textbook definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from interp.stats import paired_t, sign_flip_p, t_interval, welch, wilson


def test_welch_matches_the_welch_satterthwaite_formulas():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 8), rng.normal(1, 2, 5)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
    half = stats.t.ppf(0.975, df) * se
    c = welch(a, b)
    assert c.effect == pytest.approx(diff) and c.statistic == pytest.approx(diff / se)
    assert c.lo == pytest.approx(diff - half) and c.hi == pytest.approx(diff + half)
    assert c.p == pytest.approx(2 * stats.t.sf(abs(diff / se), df)) and c.n == 13
    assert welch(a, b, ci=0.5).hi - welch(a, b, ci=0.5).lo == pytest.approx(2 * stats.t.ppf(0.75, df) * se)
    assert math.isnan(welch([1.0], [2.0, 3.0]).p)  # one value: no test
    exact = welch([1.0, 1.0], [3.0, 3.0])  # no spread: the difference is exact, no test
    assert (exact.effect, exact.lo, exact.hi) == (-2.0, -2.0, -2.0) and math.isnan(exact.p)


def test_sign_flip_is_the_exact_share_of_flips_at_least_as_extreme():
    d = np.array([0.9, -0.2, 1.4, 0.3, 0.8, -0.5, 1.1])
    obs = abs(d.mean())
    flips = [abs(np.mean(np.array(s) * d)) for s in itertools.product((-1, 1), repeat=d.size)]
    assert sign_flip_p(d) == pytest.approx(np.mean([f >= obs - 1e-12 for f in flips]))
    assert sign_flip_p(np.zeros(4)) == 1.0


def test_paired_t_and_t_interval_match_the_formulas():
    d = np.array([0.5, 1.5, 1.0, 2.0])
    t = d.mean() / (d.std(ddof=1) / 2)
    assert paired_t(d) == pytest.approx(t)
    est = t_interval(d)
    half = 3.182446305283708 * d.std(ddof=1) / 2  # t(0.975, df=3) x sd / sqrt(4)
    assert (est.mean, est.lo, est.hi, est.n) == pytest.approx((1.25, 1.25 - half, 1.25 + half, 4))
    assert t_interval(d, ci=0.9).hi == pytest.approx(1.25 + 2.353363434801823 * d.std(ddof=1) / 2)
    assert t_interval([0.3]).lo == t_interval([0.3]).hi == 0.3  # one seed: no interval


def test_wilson_interval_matches_the_closed_form():
    share, n, z = 0.25, 40, 1.959963984540054
    den = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / den
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / den
    lo, hi = wilson(share, n)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert wilson(0.0, 10)[0] == 0.0 and math.isnan(wilson(0.5, 0)[0])
