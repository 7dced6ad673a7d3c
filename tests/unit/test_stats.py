"""The statistics the verdicts rest on, against their textbook definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from interp.stats import paired_t, sign_flip_p, t_interval, welch, welch_from_stats, wilson


def test_welch_from_samples_and_from_summary_statistics_agree():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 8), rng.normal(1, 2, 5)
    c = welch(a, b)
    d = welch_from_stats(a.mean(), a.var(ddof=1), 8, b.mean(), b.var(ddof=1), 5)
    assert c.p == pytest.approx(d.p) and c.lo == pytest.approx(d.lo) and c.hi == pytest.approx(d.hi)
    assert c.lo < c.effect < c.hi and 0 < c.p < 1
    assert math.isnan(welch([1.0], [2.0, 3.0]).p)  # one value: no test


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
    assert est.lo < d.mean() < est.hi and est.n == 4


def test_wilson_interval_matches_the_closed_form():
    share, n, z = 0.25, 40, 1.959963984540054
    den = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / den
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / den
    lo, hi = wilson(share, n)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert wilson(0.0, 10)[0] == 0.0 and math.isnan(wilson(0.5, 0)[0])
