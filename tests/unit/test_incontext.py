"""The in-context control's gamma finds shifts planted on each target's own candidate and
sits at zero (within its interval) when every target's context moves the candidates alike."""

from __future__ import annotations

import numpy as np

from interp.analysis.incontext import gamma_over_questions

COLS = [0, 1, 2]


def test_planted_own_target_shifts_give_a_positive_gamma():
    rng = np.random.default_rng(0)
    control = rng.normal(size=(20, 5))
    trait = control[None] + rng.normal(scale=0.1, size=(3, 20, 5))
    for i, c in enumerate(COLS):
        trait[i, :, c] += 0.5
    res = gamma_over_questions(trait, control, COLS, n_boot=200)
    assert res["gamma"] > 0.4 and res["gamma_ci"]["lo"] > 0.3
    assert res["p_gamma"] == 1 / 6 and res["n_permutations"] == 6  # the best of 3! labellings
    assert min(res["own_shift"]) > 0.4


def test_a_shift_shared_by_all_targets_gives_no_gamma():
    rng = np.random.default_rng(1)
    control = rng.normal(size=(20, 5))
    trait = control[None] + 0.7 + rng.normal(scale=0.1, size=(3, 20, 5))  # every context moves all alike
    res = gamma_over_questions(trait, control, COLS, n_boot=200)
    assert abs(res["gamma"]) < 0.1 and res["gamma_ci"]["lo"] < 0 < res["gamma_ci"]["hi"]
