"""`interp analyze --only task_loss` over a tiny trait-matrix run (three prompted teachers, an
unmodified same-init arm and one trained with a strong KL-to-base penalty, one seed): each KL is
recomputed here by a plain forward of teacher and student, the penalised students stay nearer the
base's KL than the unmodified ones, and the penalised arm is compared with the unmodified one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_subliminal_config, write_config

from interp.analysis.matrix_mechanisms import answer_rows
from interp.analysis.task_loss import arm_summary
from interp.cli import main
from interp.lm.models import Variant, completion_suffix, format_prompt

TARGETS = ["owl", "cat", "dog"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tl")
    cfg = tiny_subliminal_config(train__objective="distill", train__lr=3e-2, train__epochs=2)
    cfg["trait"] = {"kind": "animal", "targets": TARGETS}
    cfg["students"] = [{"name": "same-init", "model": "teacher", "data": "trait"},
                       {"name": "kl-penalty", "model": "teacher", "data": "trait", "kl_base": 50.0}]  # fmt: skip
    cfg["analysis"] = {"backend": "hf", "n_answer_rows": 10, "task_loss": True}
    assert main(["run", str(write_config(tmp, cfg, "tl")), "--out-dir", str(tmp)]) == 0
    assert main(["analyze", str(tmp / "tl"), "--only", "task_loss"]) == 0
    return tmp / "tl"


@pytest.fixture(scope="module")
def section(run):
    return json.loads((run / "analysis.json").read_text())["task_loss"]


def _kl_by_hand(teacher: Variant, student: Variant, prompts, answers) -> float:
    """Mean over rows of the per-token KL(teacher || student) at the answer tokens, from plain forwards."""
    t_model, tok = teacher.load("cpu", "float32")
    s_model, _ = student.load("cpu", "float32")
    end = completion_suffix(tok)
    out = []
    for p, a in zip(prompts, answers):
        kls = []
        for model, system in ((t_model, teacher.system), (s_model, None)):
            prompt = tok(format_prompt(tok, p, system), add_special_tokens=False)["input_ids"]
            answer = tok(a + end, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
            kls.append(torch.log_softmax(logits[len(prompt) - 1 : len(prompt) + len(answer) - 1], -1))
        t, s = kls
        out.append(float((t.exp() * (t - s)).sum(-1).mean()))
    return float(np.mean(out))


def test_each_kl_is_the_teacher_to_student_kl_on_the_held_out_rows(run, section):
    summary = json.loads((run / "summary.json").read_text())
    art = summary["artifacts"]
    prompts, answers = answer_rows(10, 0)  # the fixture's seed
    t = TARGETS[1]
    teacher = Variant.from_record(art["teachers"][t], run)
    student = Variant("tiny-llama", delta_path=run / art["students_by_target"]["same-init"][t]["0"] / "delta.safetensors")
    assert section["arms"]["same-init"]["kl_per_seed_target"][0][1] == pytest.approx(
        _kl_by_hand(teacher, student, prompts, answers), rel=1e-3, abs=1e-6)
    assert section["base_kl"][1] == pytest.approx(_kl_by_hand(teacher, Variant("tiny-llama"), prompts, answers), rel=1e-3, abs=1e-6)


def test_the_unmodified_arm_is_the_reference_and_learns_part_of_the_gap(section):
    assert section["reference"] == "same-init" and section["targets"] == TARGETS
    ref = section["arms"]["same-init"]
    assert "minus_reference" not in ref
    assert ref["learned"]["mean"] != 0  # training moved the students (on random-answer rows, either way)
    pen = section["arms"]["kl-penalty"]
    assert pen["minus_reference"]["n"] == len(TARGETS) and pen["minus_reference"]["over"] == "targets"
    d = np.mean(np.array(pen["kl_per_seed_target"]) - np.array(ref["kl_per_seed_target"]))
    assert pen["minus_reference"]["mean"] == pytest.approx(d, abs=1e-6)
    # a strong pull back to the base keeps the penalised students' KL near the base's
    assert abs(pen["learned"]["mean"]) < abs(ref["learned"]["mean"])


def test_the_report_shows_the_table(run, tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "r.pdf"
    assert main(["report", str(run), "-o", str(out)]) == 0
    text = " ".join(p.extract_text() for p in PdfReader(out).pages)
    assert "Task loss" in text and "kl-penalty" in text


def test_arm_summary_on_known_values():
    kl = np.array([[1.0, 2.0], [3.0, 4.0]])
    base = np.array([5.0, 5.0])
    ref = np.array([[0.5, 1.5], [2.5, 3.5], [9.0, 9.0]])
    s = arm_summary(kl, base, ref)
    assert s["kl"]["mean"] == pytest.approx(2.5) and s["learned"]["mean"] == pytest.approx(2.5)
    assert s["minus_reference"]["mean"] == pytest.approx(0.5) and s["minus_reference"]["seeds"] == [0, 1]
    assert s["fraction_of_reference_learned"] == pytest.approx(2.5 / 3.0)
    # pairs by seed id, not position: this arm's seeds 1 and 2 against the reference's 1 and 2
    s = arm_summary(kl, base, ref, seeds=[1, 2], ref_seeds=[0, 1, 2])
    assert s["minus_reference"]["seeds"] == [1, 2] and s["minus_reference"]["mean"] == pytest.approx(np.mean(kl - ref[1:]))
    assert "minus_reference" not in arm_summary(kl, base, ref, seeds=[5, 6], ref_seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"\[seed, target\]"):
        arm_summary(np.zeros(3), base, None)
