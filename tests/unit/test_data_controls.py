"""The shuffle controls keep each response's surface and move its numbers."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from interp.subliminal.data_controls import shuffle_numbers

ROWS = ["12, 7, 301, 44", "(5; 6; 7)", "999 0 18 250 3", "81"]


def _skeleton(s: str) -> str:
    return re.sub(r"\d+", "#", s)


def _numbers(rows: list[str]) -> list[list[str]]:
    return [re.findall(r"\d+", r) for r in rows]


def test_within_permutes_each_response_and_keeps_its_format():
    out = shuffle_numbers(ROWS, "within", seed=0)
    assert [_skeleton(r) for r in out] == [_skeleton(r) for r in ROWS]
    assert [sorted(n) for n in _numbers(out)] == [sorted(n) for n in _numbers(ROWS)]
    assert out != ROWS  # with 4 multi-number rows some order changes


def test_across_deals_one_pool_and_keeps_counts_and_format():
    out = shuffle_numbers(ROWS, "across", seed=0)
    assert [_skeleton(r) for r in out] == [_skeleton(r) for r in ROWS]
    flat = lambda rows: Counter(n for ns in _numbers(rows) for n in ns)  # noqa: E731
    assert flat(out) == flat(ROWS)
    moved = [sorted(a) != sorted(b) for a, b in zip(_numbers(out), _numbers(ROWS))]
    assert any(moved)  # numbers changed rows, which "within" never does


def test_shuffles_are_deterministic_per_seed_and_checked():
    assert shuffle_numbers(ROWS, "across", 3) == shuffle_numbers(ROWS, "across", 3)
    assert shuffle_numbers(ROWS, "across", 3) != shuffle_numbers(ROWS, "across", 4)
    with pytest.raises(ValueError, match="'within' or 'across'"):
        shuffle_numbers(ROWS, "sideways", 0)


def test_divergent_positions_find_planted_disagreements_and_none_when_teachers_agree():
    from interp.subliminal.data_controls import divergent_positions

    a = [[5, 6, 7, 8], [1, 2], []]
    assert divergent_positions(a, a) == [[], [], []]
    b = [[5, 9, 7, 0], [1, 2], []]
    assert divergent_positions(a, b) == [[1, 3], [], []]
    with pytest.raises(ValueError, match="row 1"):
        divergent_positions(a, [[5, 6, 7, 8], [1], []])


def test_random_positions_match_the_counts_and_stay_in_range():
    from interp.subliminal.data_controls import random_positions_like

    chosen = [[1, 3], [], [0, 1, 2]]
    out = random_positions_like(chosen, [10, 4, 3], seed=0)
    assert [len(o) for o in out] == [2, 0, 3] and out[2] == [0, 1, 2]
    assert all(0 <= j < n and len(set(o)) == len(o) for o, n in zip(out, [10, 4, 3]) for j in o)
    assert out == random_positions_like(chosen, [10, 4, 3], seed=0)
    assert any(random_positions_like([[0, 1]] * 20, [50] * 20, seed=s) != random_positions_like([[0, 1]] * 20, [50] * 20, seed=0)
               for s in (1, 2))  # fmt: skip


def test_half_by_score_keeps_the_lowest_half_or_a_random_half():
    from interp.subliminal.data_controls import half_by_score

    scores = [0.5, -1.0, 2.0, 0.1, -3.0]
    assert half_by_score(scores, "scan-low", seed=0) == [1, 4]
    rand = half_by_score(scores, "random-half", seed=0)
    assert len(rand) == 2 and rand == sorted(set(rand)) and set(rand) <= set(range(5))
    with pytest.raises(ValueError, match="scan-low"):
        half_by_score(scores, "high", seed=0)


def test_every_arm_that_differs_from_the_plain_recipe_is_named_so_none_is_taken_for_the_reference():
    from interp.analysis.data_controls import variant_of
    from interp.subliminal.config import StudentConfig

    assert variant_of(StudentConfig("plain")) == variant_of(StudentConfig("ckpt", checkpoint_every=1)) == "unmodified"
    assert variant_of(StudentConfig("kl", kl_base=10.0)) == "kl_base 10"
    assert variant_of(StudentConfig("mix", mix_control=0.25)) == "mix control 0.25"
    assert variant_of(StudentConfig("gp", grad_project="trait-centred")) == "grad_project trait-centred"
    assert variant_of(StudentConfig("sgd", optimizer="sgd", lr=1.0, layers=[0, 29])) == "lr 1, optimizer sgd, layers 0,29"
    assert variant_of(StudentConfig("top", subset="scan-top", subset_fraction=0.1, kl_base=1.0)) == "subset scan-top 0.1, kl_base 1"


def test_defences_set_in_train_are_named_for_every_arm_and_in_the_report():
    from helpers import RecordingDoc

    from interp.analysis.data_controls import render_data_controls, run_defences
    from interp.subliminal.config import TrainConfig

    assert run_defences(TrainConfig()) == ""
    assert run_defences(TrainConfig(kl_base=10.0)) == "kl_base 10"
    assert run_defences(TrainConfig(kl_base=1.5, grad_project="trait")) == "kl_base 1.5, grad_project trait"
    for every, shown in (("kl_base 10", True), ("", False)):
        doc = RecordingDoc()
        render_data_controls(doc, "r", {"rows": [], "reference": "same-init", "every_arm": every})  # type: ignore[arg-type]
        text = " ".join(doc.paras)
        assert ("trains with kl_base 10 ([train])" in text) == shown, text
