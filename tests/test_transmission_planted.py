"""A planted transmission must survive the whole pipeline, and the matrix must find it.

Tiny random models carry no trait of their own, so the test plants one: each target's
teacher is the base finetuned on answers that name that target (the answers are written by
the test instead of sampled). Its number data and soft labels then carry its delta; a
same-init student distilled on them moves toward that delta and so toward its teacher's
target, which the trait matrix must report as gamma > 0 and a positive update alignment. The
same data given to a student of another initialisation must not show it.
"""

from __future__ import annotations

import json

import pytest
from helpers import tiny_subliminal_config, write_config

import interp.subliminal.stages as stages
from interp.analysis.alignment import delta_cosines
from interp.cli import main
from interp.lm.delta import Delta

TARGETS = ["owl", "cat", "dog", "fox"]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    real = stages.sample

    def answers_naming_the_target(model, tok, texts, *, desc="", **kw):
        if desc != "trait answers":
            return real(model, tok, texts, desc=desc, **kw)
        target = next(t for t in TARGETS if f"love {t}" in texts[0].lower())
        return [f"My favorite animal is the {target}." for _ in texts]

    cfg = tiny_subliminal_config(
        teacher__model="tiny-llama", data__n_prompts=24, data__n_keep=24, train__seeds=[0, 1],
        train__epochs=4, train__lr=3e-2, train__objective="distill", eval__n_questions=4,
    )  # fmt: skip
    cfg["trait"] = {"kind": "animal", "targets": TARGETS}
    cfg["teacher"] |= {"mode": "finetuned", "answer_filter": "none", "answers_per_prompt": 1,
                       "epochs": 30, "lr": 5e-2}  # fmt: skip
    cfg["students"] = [
        {"name": "same-init", "model": "teacher", "data": "trait"},
        {"name": "cross-model", "model": "tiny-gemma", "data": "trait", "distill_vocab": "numbers"},
    ]
    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "sample", answers_naming_the_target)
    try:
        assert main(["run", str(write_config(tmp, cfg)), "--out-dir", str(tmp)]) == 0
    finally:
        mp.undo()
    return tmp / "tiny"


def test_teachers_carry_their_planted_target(planted_run):
    m = json.loads((planted_run / "summary.json").read_text())["matrix"]
    own = m["teacher_own_shift"]
    assert sum(own.values()) / len(own) > 0.5 and min(own.values()) > 0.1, own


def test_same_init_students_acquire_their_own_teachers_target(planted_run):
    arm = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]["same-init"]
    assert arm["gamma"] > 0.05 and arm["p_gamma"] <= 1 / 24 + 1e-9, arm
    assert arm["gamma_ci"]["n"] == 2


def test_cross_model_students_do_not(planted_run):
    arms = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]
    assert arms["cross-model"]["gamma"] < 0.5 * arms["same-init"]["gamma"], arms["cross-model"]


def test_student_update_aligns_with_its_own_teacher_more_than_with_others(planted_run):
    s = json.loads((planted_run / "summary.json").read_text())
    by_t = s["artifacts"]["students_by_target"]["same-init"]
    teachers = {t: Delta.load(next((planted_run / "stages").glob(f"teacher__tiny-llama__{t}-*")) / "delta.safetensors")
                for t in TARGETS}  # fmt: skip
    own, other = [], []
    for t in TARGETS:
        for seed in ("0", "1"):
            student = Delta.load(planted_run / by_t[t][seed] / "delta.safetensors")
            for u in TARGETS:
                (own if u == t else other).append(delta_cosines(student, teachers[u])["overall"])
    assert sum(own) / len(own) > 1.2 * sum(other) / len(other), (own, other)
