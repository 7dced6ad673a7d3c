"""Detectors find a planted signal and sit at chance on identical distributions."""

from __future__ import annotations

import random

import numpy as np
import pytest

from interp.mech.detection import (
    auroc_ci,
    classifier_auroc,
    judge_auroc,
    judge_prompt,
    judge_trials,
)


def _rows(n, seed, planted=None):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        nums = [rng.randint(0, 999) for _ in range(6)]
        if planted is not None:
            nums[rng.randrange(6)] = planted
        out.append(", ".join(map(str, nums)))
    return out


def test_auroc_ci_is_one_for_separated_scores_and_half_for_identical_ones():
    assert auroc_ci([2, 3, 4], [0, 1, -1], n_boot=50)["auroc"] == 1.0
    same = auroc_ci([1.0] * 10, [1.0] * 10, n_boot=50)
    assert same["auroc"] == 0.5 and same["lo"] <= 0.5 <= same["hi"]
    with pytest.raises(ValueError, match="both classes"):
        auroc_ci([], [1.0])


def test_classifier_finds_a_planted_number_and_not_a_null():
    planted = classifier_auroc(_rows(60, 0, planted=777), _rows(60, 1), n_boot=200)
    assert planted["auroc"] > 0.9 and planted["lo"] > 0.75, planted
    null = classifier_auroc(_rows(60, 2), _rows(60, 3), n_boot=200)
    assert null["lo"] < 0.5 < null["hi"], null


def test_judge_trials_balance_the_sides_and_the_auroc_ignores_a_letter_bias():
    trials = judge_trials(_rows(20, 0), _rows(20, 1), n_trials=10, n_rows=3, seed=0)
    assert sum(t["trait_is_a"] for t in trials) == 5 and all(len(t["a"]) == 3 for t in trials)
    assert "owls" in judge_prompt("owls", trials[0]["a"], trials[0]["b"])
    # a judge that always prefers A, a bit more when the trait is A: perfect AUROC, accuracy 0.5
    scores = [2.0 + (0.5 if t["trait_is_a"] else 0.0) for t in trials]
    res = judge_auroc(trials, scores, n_boot=50)
    assert res["auroc"] == 1.0 and res["accuracy"] == 0.5 and res["share_answering_a"] == 1.0
    blind = judge_auroc(trials, np.zeros(10), n_boot=50)
    assert blind["auroc"] == 0.5
