"""A planted transmission must survive the whole pipeline, and the matrix must find it.

Tiny random models carry no trait of their own, so the test plants one: each target's
teacher is the base finetuned on answers that name that target (the answers are written by
the test instead of sampled). Its number data and soft labels then carry its delta; a
same-init student distilled on them moves toward its teacher's target, which the trait
matrix must report as gamma > 0 with a small permutation p. The
same data given to a student of another initialisation must not show it.

In parameter space the picture depends on how the student is trained. A fully finetuned
same-init student's update points toward its own teacher's delta more than toward the other
teachers' deltas, also after removing what all teachers share (mean cosine with the
target-specific part 0.0083 own vs -0.0023 other at lr 1e-3; 0.0046 vs -0.0011 at lr 3e-4):
that is asserted. A LoRA student's update did not (0.040 own vs 0.040 other, measured when the
teachers trained on the run's seed, so that seed-0 students shared their LoRA A init), though its
behaviour moves: not asserted, and worth knowing before reading LoRA update cosines.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_subliminal_config, write_config

import interp.subliminal.stages as stages
from interp.cli import main

TARGETS = ["owl", "cat", "dog", "fox", "bear"]


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
        {"name": "full", "model": "teacher", "data": "trait", "method": "full", "lr": 1e-3},
        # the extremes of the LoRA-rank grid and SGD (issue 29): a null there must not be the pipeline's
        {"name": "rank1", "model": "teacher", "data": "trait", "lora_r": 1, "lora_alpha": 1},
        {"name": "rank128", "model": "teacher", "data": "trait", "lora_r": 128, "lora_alpha": 128, "lr": 3e-3},
        {"name": "sgd", "model": "teacher", "data": "trait", "optimizer": "sgd", "lr": 1.0},
    ]
    cfg["analysis"] = {"backend": "hf", "n_prompts": 4, "n_number_prompts": 2, "n_answer_rows": 24,
                       "gradient_batches": 1, "n_boot": 50, "subspace_rank": 0,
                       "arms": ["same-init", "cross-model", "full"]}  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "sample", answers_naming_the_target)
    try:
        assert main(["run", str(write_config(tmp, cfg)), "--out-dir", str(tmp)]) == 0
    finally:
        mp.undo()
    return tmp / "tiny"


def test_teachers_carry_their_planted_target_and_a_weak_one_is_named(planted_run):
    """Measured (transformers 5.23, peft 0.21.2): at teacher lr 5e-2 how far each planted teacher
    moves its own target depends on its LoRA init. With the teachers on the run's seed, four of
    five moved it by 0.95-1.32 nats and 'dog' by -0.09; on their own seed streams
    (`stages.teacher_seed`), owl 1.15, bear 0.66, dog 0.26, fox 0.25, cat 0.09 (the students'
    gamma stayed 0.50, p 0.008). Lower teacher lrs plant every teacher (lr 2e-2 x 60 epochs:
    2.4-4.9 nats) but then the students' gamma falls to 0.21 with p = 0.042, and to 0.05-0.14
    (p 0.15-0.33) with more or gentler student training: the student tests below need this
    fixture. So the run must name its weak teachers."""
    m = json.loads((planted_run / "summary.json").read_text())["matrix"]
    own = m["teacher_own_shift"]
    shifts = sorted(own.values())
    assert shifts[-1] > 0.5 and shifts[len(shifts) // 2] > 0.2 and sum(v > 0.1 for v in shifts) >= 4, own
    from interp.subliminal.experiment import WEAK_TEACHER_NATS

    weak = [t for t, v in own.items() if v < WEAK_TEACHER_NATS]
    assert all(any(f"teacher of '{t}'" in n for n in m["notes"]) for t in weak), (weak, m["notes"])


def test_same_init_students_acquire_their_own_teachers_target(planted_run):
    arm = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]["same-init"]
    # 5 targets: 120 relabellings, so the permutation p can reach 1/120
    assert arm["gamma"] > 0.05 and arm["p_gamma"] < 0.05, arm
    assert arm["gamma_ci"]["n"] == 2


@pytest.mark.parametrize("arm_name", ["rank1", "rank128", "sgd"])
def test_rank_extremes_and_sgd_students_acquire_it_too(planted_run, arm_name):
    """LoRA rank 1 and rank 128 (alpha = rank) and SGD with momentum carry the planted target
    through the same pipeline: a null for them in the LoRA-artefact grid is not the plumbing's."""
    arms = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]
    arm = arms[arm_name]
    assert arm["gamma"] > 0.05 and arm["p_gamma"] < 0.05, arm


def test_cross_model_students_do_not(planted_run):
    arms = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]
    assert arms["cross-model"]["gamma"] < 0.5 * arms["same-init"]["gamma"], arms["cross-model"]


def test_full_finetune_students_align_with_their_own_teachers_specific_update(planted_run):
    from interp.lm.delta import Delta
    from interp.mech.alignment import delta_cosines

    s = json.loads((planted_run / "summary.json").read_text())
    arm = s["matrix"]["arms"]["full"]
    assert arm["gamma"] > 0.05 and arm["p_gamma"] < 0.05, arm
    teachers = {t: Delta.load(next((planted_run / "stages").glob(f"teacher__tiny-llama__{t}-*")) / "delta.safetensors").to_dense()
                for t in TARGETS}  # fmt: skip
    names = list(teachers[TARGETS[0]])
    shared = {n: sum(teachers[t][n] for t in TARGETS) / len(TARGETS) for n in names}
    specific = {t: {n: teachers[t][n] - shared[n] for n in names} for t in TARGETS}
    own, other = [], []
    for t, seeds in s["artifacts"]["students_by_target"]["full"].items():
        for rel in seeds.values():
            student = Delta.load(planted_run / rel / "delta.safetensors")
            for u in TARGETS:
                (own if u == t else other).append(delta_cosines(student, specific[u])["overall"])
    assert sum(own) / len(own) > 0 > sum(other) / len(other), (own, other)


def test_hypothesis_script_reads_the_matrix(planted_run):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "analyses" / "transmission.py"
    out = subprocess.run([sys.executable, str(script), str(planted_run)], capture_output=True,
                         text=True, timeout=120).stdout.strip().splitlines()  # fmt: skip
    arm = json.loads((planted_run / "summary.json").read_text())["matrix"]["arms"]["same-init"]
    last = out[-1]
    assert last.startswith("VERDICT hypothesis=transmission ")
    ci = arm["gamma_ci"]
    expected = "supported" if arm["p_gamma"] < 0.01 and ci["lo"] > 0 else "inconclusive"
    assert f"result={expected}" in last and f"effect={arm['gamma']:.4g}" in last and "n=5" in last, last


@pytest.fixture(scope="module")
def planted_mechanisms(planted_run):
    assert main(["analyze", str(planted_run)]) == 0
    return json.loads((planted_run / "analysis.json").read_text())["matrix_mechanisms"]


def test_matrix_mechanisms_pair_each_student_with_its_own_teacher(planted_run, planted_mechanisms, monkeypatch):
    """The driver's plumbing: a student whose answer-position activations *are* its own
    teacher's must give direction gamma at its maximum rank (p = 1/120), and one whose
    activations are another target's teacher's (targets rotated by one) no significant gamma.
    Fails if students, teachers or targets are paired in the wrong order."""
    from interp.analysis import matrix_mechanisms as matrix_run
    from interp.analysis.reader import AnalysisRun
    from interp.subliminal.config import AnalysisConfig

    acfg = AnalysisConfig(backend="hf", n_prompts=4, n_number_prompts=2, n_answer_rows=24,
                          gradient_batches=1, n_boot=50, subspace_rank=0)  # fmt: skip
    ctx = AnalysisRun(planted_run, acfg)
    rows = matrix_run.answer_rows(acfg.n_answer_rows, ctx.cfg["seed"])
    refs = matrix_run._refs(ctx, "tiny-llama", rows)  # cached by the analyze run above
    for shift in (0, 1):
        oracle = torch.roll(refs["prompted"], shift, dims=0)  # [target, row, layer, d]
        noise = torch.Generator().manual_seed(shift)
        fake = lambda *a, o=oracle, g=noise: torch.stack([o + 1e-3 * torch.randn(o.shape, generator=g) for _ in range(2)])  # noqa: E731
        monkeypatch.setattr(matrix_run, "_student_acts", fake)
        d = matrix_run._arm(ctx, "same-init", "tiny-llama", rows, refs)["direction"]
        if shift == 0:
            assert d["gamma"] > 0.1 and d["p"] == pytest.approx(1 / 120), d
        else:
            assert d["p"] > 0.05, d


def test_matrix_mechanisms_report_every_arm(planted_mechanisms):
    """Every arm is reported with its teachers and a probe on the teachers' answer positions.

    Measured on this planted run (2 layers, 24 rows, 2 seeds): the teachers are told apart at
    answer positions on their own base (probe accuracy 1.0 at both layers, chance 0.2), but no
    student arm's activation shift points toward its own teacher's direction significantly
    (direction gamma: full finetune 0.019 p 0.38, LoRA same-init 0.072 p 0.13, cross-model 0.011
    p 0.30): the behavioural transmission this run plants does not show at that resolution.
    """
    arms = planted_mechanisms["arms"]
    assert set(arms) == {"same-init", "cross-model", "full"}
    assert planted_mechanisms["targets"] == TARGETS and planted_mechanisms["n_rows"] == 24
    assert arms["same-init"]["teachers"] == "the run's teachers"
    assert arms["cross-model"]["model"] == "tiny-gemma" and arms["cross-model"]["teachers"].startswith("the base prompted")
    for arm in arms.values():
        assert len(arm["probe"]["teacher_accuracy"]) == len(arm["shift_norm_by_layer"])
        assert arm["probe"]["chance"] == 1 / len(TARGETS)
        assert arm["direction"]["gamma_ci"]["n"] == 2 and arm["direction"]["n_permutations"] == 120
    # the planted (finetuned) teachers differ from each other where the students are read
    assert min(arms["full"]["probe"]["teacher_accuracy"]) > 0.5


def test_report_shows_the_matrix_mechanisms(planted_run, planted_mechanisms, tmp_path):
    """The PDF carries each arm's direction and probe gamma as analysis.json has them."""
    import re

    from pypdf import PdfReader

    from interp.fmt import fmt, fmt_est
    from interp.report.build import build_report

    build_report([planted_run], tmp_path / "planted.pdf")
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "planted.pdf")).pages))
    assert "Trait-matrix mechanisms at answer positions" in text
    for name, arm in planted_mechanisms["arms"].items():
        d = arm["direction"]
        assert f"{name} {arm['model']} {fmt_est(d['gamma_ci'])} {fmt(d['p'])}" in text, name
