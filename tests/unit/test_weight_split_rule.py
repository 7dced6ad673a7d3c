"""The weight-split unit's reasons to skip, its paired contrast, and its hypothesis script's rule
(interp.analysis.weight_split, analyses/weight_split.py), without models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import load_script

from interp.analysis.weight_split import _gamma, _skip, paired_contrast


def _script():
    return load_script("weight_split")


def _ctx(on=True, mode="finetuned", targets=("owl", "cat"), rank=8):
    return SimpleNamespace(a=SimpleNamespace(weight_split=on, subspace_rank=rank),
                           config=SimpleNamespace(teacher=SimpleNamespace(mode=mode),
                                                  trait=SimpleNamespace(target_list=lambda: list(targets))))  # fmt: skip


def test_skip_reasons_name_what_is_missing():
    assert _skip(_ctx()) is None
    assert "weight_split = true" in _skip(_ctx(on=False))
    assert "teacher.mode = 'prompt'" in _skip(_ctx(mode="prompt")) and "finetuned" in _skip(_ctx(mode="prompt"))
    assert "steered" in _skip(_ctx(mode="steered"))
    assert ">= 2 targets" in _skip(_ctx(targets=("owl",)))
    assert "subspace_rank = 0" in _skip(_ctx(rank=0))


def test_gamma_per_condition_and_its_interval_unit():
    rng = np.random.default_rng(0)
    cols = [0, 1, 2]
    shifts = rng.normal(0, 0.01, size=(3, 3, 5))
    for i in range(3):
        shifts[:, i, i] += 1.0  # each target's students move toward their own target
    g = _gamma(shifts, cols, seed=0, ci=0.95)
    assert g["gamma"] == pytest.approx(1.0, abs=0.05) and g["p_gamma"] == pytest.approx(1 / 6)
    assert g["interval"]["unit"] == "seeds" and g["interval"]["n"] == 3 and g["interval"]["lo"] > 0.9
    one = _gamma(shifts[:1], cols, seed=0, ci=0.95)
    assert one["interval"]["unit"] == "targets" and one["interval"]["n"] == 3
    flat = _gamma(np.zeros((2, 3, 5)), cols, seed=0, ci=0.95)
    assert flat["gamma"] == 0.0 and flat["p_gamma"] == 1.0


def test_paired_contrast_pairs_the_same_units():
    a = {"interval": {"unit": "seeds"}, "per_seed": [0.3, 0.4, 0.5], "per_target": [9, 9]}
    b = {"interval": {"unit": "seeds"}, "per_seed": [0.1, 0.1, 0.3], "per_target": [0, 0]}
    c = paired_contrast(a, b, 0.95)
    assert c["mean"] == pytest.approx(0.7 / 3) and c["n"] == 3 and c["unit"] == "seeds"
    assert c["p_sign_flip"] == pytest.approx(0.25)  # all 2^3 sign flips; |mean| reached by 2 of 8
    t = paired_contrast({**a, "interval": {"unit": "targets"}}, b, 0.95)
    assert t["mean"] == pytest.approx(9.0) and t["n"] == 2


@pytest.mark.parametrize(
    ("lo", "hi", "n", "share", "full", "expected"),
    [
        (0.1, 0.3, 3, 0.8, 0.5, "supported"),
        (0.1, 0.3, 3, 0.5, 0.5, "supported"),  # exactly half is enough
        (0.1, 0.3, 3, 0.3, 0.5, "inconclusive"),  # keeps too little of the full gamma
        (0.1, 0.3, 3, 2.0, -0.1, "inconclusive"),  # nothing to keep
        (-0.1, 0.3, 3, 0.8, 0.5, "inconclusive"),
        (-0.3, 0.0, 3, 0.8, 0.5, "not supported"),  # at or below 0
        (-0.3, -0.1, 3, 0.1, 0.5, "not supported"),
        (0.2, 0.2, 1, 0.9, 0.5, "inconclusive"),  # one unit: no interval
    ],
)
def test_the_scripts_rule(lo, hi, n, share, full, expected):
    decide_split = _script().decide_split
    d = {"lo": lo, "hi": hi, "n": n, "mean": (lo + hi) / 2, "unit": "seeds"}
    assert decide_split(d, share, full)[0] == expected


def test_the_script_is_not_testable_without_the_section(tmp_path, capsys):
    mod = _script()
    assert mod.main([str(tmp_path / "absent")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("VERDICT hypothesis=weight_split result=not testable")
