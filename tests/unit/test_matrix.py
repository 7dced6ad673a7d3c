"""The trait matrix statistics: a planted own-target shift is found, drift cancels, a null stays null."""

from __future__ import annotations

import numpy as np
import pytest

from interp.subliminal.matrix import gamma, log_odds, permutation_test, shift_matrix


def test_log_odds_two_candidates_is_the_log_ratio():
    lp = np.log(np.array([[0.2, 0.8], [0.5, 0.5]]))
    lo = log_odds(lp)
    assert lo[0] == pytest.approx(np.mean([np.log(0.2 / 0.8), 0.0]))
    assert lo[1] == pytest.approx(-lo[0])


def test_log_odds_ignores_the_normalisation_of_the_scores():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(5, 7))
    assert np.allclose(log_odds(lp), log_odds(lp + rng.normal(size=(5, 1))))


def test_gamma_is_unchanged_by_drift_common_to_all_students():
    rng = np.random.default_rng(1)
    s = rng.normal(0, 0.1, (4, 10))
    drift = rng.normal(0, 2.0, 10)  # every student moves toward the same candidates
    cols = [3, 1, 7, 0]
    assert gamma(s + drift, cols) == pytest.approx(gamma(s, cols))


def test_planted_own_target_shift_is_found_with_the_smallest_p():
    rng = np.random.default_rng(2)
    k, c = 6, 16
    cols = list(range(2, 2 + k))
    s = rng.normal(0, 0.05, (k, c))
    t = rng.normal(0, 1.0, (k, c))
    for i, col in enumerate(cols):
        s[i, col] += 0.4
        t[i, col] += 3.0
    res = permutation_test(s, t, cols)
    assert res.exact and res.n_permutations == 720
    assert res.gamma == pytest.approx(0.4, abs=0.1)
    assert res.p_gamma == pytest.approx(1 / 720)
    assert res.p_correlation < 0.01


def test_null_matrix_is_not_significant():
    rng = np.random.default_rng(3)
    k, c = 6, 16
    cols = list(range(k))
    ps = []
    for rep in range(20):
        s = rng.normal(0, 0.1, (k, c)) + rng.normal(0, 0.5, c)  # drift, no own-target signal
        ps.append(permutation_test(s, rng.normal(size=(k, c)), cols, seed=rep).p_gamma)
    assert np.mean(np.array(ps) < 0.05) <= 0.2  # ~5% expected; 20 draws
    assert np.median(ps) > 0.2


def test_shift_matrix_rows_follow_the_target_order():
    base = np.array([1.0, 2.0, 3.0])
    m = shift_matrix({"b": np.array([1.0, 2.0, 4.0]), "a": np.array([2.0, 2.0, 3.0])}, base, ["a", "b"])
    assert m.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_gamma_needs_one_row_per_target():
    with pytest.raises(ValueError, match="one row per target"):
        gamma(np.zeros((3, 5)), [0, 1])


def test_per_target_gamma_averages_to_gamma():
    from interp.subliminal.matrix import gamma, per_target_gamma

    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 7))
    cols = [5, 0, 2, 6]
    per = per_target_gamma(s, cols)
    assert per.shape == (4,) and per.mean() == pytest.approx(gamma(s, cols))
    assert per[0] == pytest.approx(s[0, 5] - np.mean([s[0, 0], s[0, 2], s[0, 6]]))
