"""Token entanglement's pure parts: centring, ranking, data rates, the prompting difference."""

from __future__ import annotations

import numpy as np
import pytest

from interp.mech import entanglement as en


def test_a_raised_number_ranks_first_and_a_constant_shift_cancels():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 20))
    prompted = base + 3.0 + rng.normal(scale=0.01, size=(6, 20))  # the prompt lifts every number...
    prompted[:, 7] += 1.0  # ...and number 7 more
    prompted[:, 2] -= 0.5
    s = en.number_shifts(prompted, base)
    assert np.allclose(s.mean(axis=1), 0)
    r = en.entangled_numbers(s, list(range(20)), k=3)
    assert r["top"][0]["number"] == 7 and r["bottom"][0]["number"] == 2
    assert r["top"][0]["ci"]["lo"] > 0.8 and r["top"][0]["ci"]["n"] == 6
    with pytest.raises(ValueError, match="equal"):
        en.number_shifts(prompted[:, :5], base)


def test_number_rates_count_per_thousand_numbers():
    rates = en.number_rates(["7, 12, 7", "087, 5"], [7, 12, 87, 3])
    assert rates["total_numbers"] == 5
    assert rates["per_1000"] == {7: 400.0, 12: 200.0, 87: 200.0, 3: 0.0}


def test_prompting_effect_is_the_paired_difference_over_questions():
    ent = np.array([[0.3, 0.5, 0.4], [0.1, 0.3, 0.2]])  # [number, question]
    rnd = np.array([[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    r = en.prompting_effect(ent, rnd, n_boot=200)
    assert r["entangled"] == pytest.approx(0.3) and r["random"] == pytest.approx(0.1)
    assert r["diff"]["mean"] == pytest.approx(0.2) and r["diff"]["lo"] > 0 and r["n_questions"] == 3
