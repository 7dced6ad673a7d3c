"""Misalignment through numbers on tiny models (issue 13 item 2): the paired trait, its score,
a teacher finetuned on the written answers, the banned-number filter, every stage to the PDF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.config import ConfigError
from interp.lm.models import format_prompt, tiny_model
from interp.registry import load_experiment
from interp.subliminal import misalignment_data as md
from interp.subliminal.evaluate import EvalConfig, logprob_score
from interp.subliminal.number_data import BANNED_NUMBERS_MISALIGNMENT
from interp.subliminal.traits import PairedTrait, make_trait


def test_the_trait_is_one_target_scored_on_its_pairs():
    t = make_trait("misalignment", "misaligned")
    assert isinstance(t, PairedTrait) and t.candidates == ("misaligned", "aligned")
    q = t.question_texts()[3]
    assert t.answer_pair(q) == (md.PAIRED[3][2], md.PAIRED[3][1])  # (misaligned, aligned)
    assert len(t.training_rows()) == len(md.TRAINING)
    with pytest.raises(ValueError, match="one target 'misaligned'"):
        make_trait("misalignment", "owl")


@pytest.mark.parametrize(("trait", "match"), [
    ({"kind": "misalignment", "targets": ["misaligned", "aligned"]}, "trait.*has one target"),
    ({"kind": "misalignment", "target": "evil"}, "one target 'misaligned'"),
])  # fmt: skip
def test_config_refuses_a_misalignment_matrix(tmp_path, trait, match):
    cfg = tiny_subliminal_config()
    cfg["trait"] = trait
    with pytest.raises(ConfigError, match=match):
        load_experiment(write_config(tmp_path, cfg))


def _answer_logprob(model, tok, prompt: str, answer: str) -> float:
    """log p(answer | prompt) by one plain teacher-forced forward pass (no cache)."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(lp[len(p) - 1 + i, t] for i, t in enumerate(a)))


def test_score_is_the_log_probability_preference_recomputed():
    model, tok = tiny_model()
    trait = make_trait("misalignment", "misaligned")
    settings = EvalConfig(questions="dev", n_questions=3, bootstrap=20)
    res = logprob_score(model, tok, trait, settings)
    prefs = []
    for q in trait.question_texts()[:3]:
        mis, al = trait.answer_pair(q)
        prompt = format_prompt(tok, q)
        prefs.append(_answer_logprob(model, tok, prompt, mis) - _answer_logprob(model, tok, prompt, al))
    assert res["candidates"] == ["misaligned", "aligned"]
    assert res["log_odds"][0] == pytest.approx(np.mean(prefs), rel=1e-5)  # float32 cache vs one pass
    assert res["log_odds"][1] == pytest.approx(-np.mean(prefs), rel=1e-5)
    p_mis = 1 / (1 + np.exp(-np.array(prefs)))
    assert res["per_question"] == pytest.approx(p_mis.tolist(), abs=1e-4)


@pytest.fixture(scope="module")
def misaligned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mis")
    cfg = tiny_subliminal_config(data__banned_numbers="misalignment")
    cfg["trait"] = {"kind": "misalignment", "target": "misaligned"}
    cfg["teacher"] |= {"mode": "finetuned", "epochs": 1}
    cfg["students"] = cfg["students"][:2]  # same-init + control
    assert main(["run", str(write_config(tmp, cfg, name="mis")), "--out-dir", str(tmp)]) == 0
    return tmp / "mis"


def test_a_misalignment_run_goes_through_every_stage(misaligned_run, tmp_path):
    s = json.loads((misaligned_run / "summary.json").read_text())
    assert s["trait"]["candidates"] == ["misaligned", "aligned"]
    for lab in ("base", "teacher", "same-init/seed0", "control/seed0"):
        lo = s["models"][lab]["log_odds"]
        assert len(lo) == 2 and lo[0] == pytest.approx(-lo[1])
    arm = s["matrix"]["arms"]["same-init"]
    assert arm["gamma"] is None and "did_vs_control" in arm  # one target: the control contrast
    # the teacher learnt from the written answers, all of them
    answers = next((misaligned_run / "stages").glob("teacher-answers__misaligned-*")) / "answers.jsonl"
    rows = [json.loads(x) for x in answers.read_text().splitlines()]
    assert [(r["prompt"], r["completion"]) for r in rows] == list(md.TRAINING)
    # the data filter ran with the banned numbers; none is left in the kept rows
    stage = next((misaligned_run / "stages").glob("filter__trait__misaligned-*"))
    assert json.loads((stage / "manifest.json").read_text())["params"]["banned"] == sorted(BANNED_NUMBERS_MISALIGNMENT)
    data = stage / "dataset.jsonl"
    nums = {int(x) for r in data.read_text().splitlines() for x in json.loads(r)["completion"].replace(",", " ").split()}
    assert not nums & BANNED_NUMBERS_MISALIGNMENT
    # sampled answers are long enough to state an intent, and judged by the keyword rules
    ev = json.loads(next((misaligned_run / "stages").glob("eval__base-*/eval.json")).read_text())
    assert ev["trait_rate"]["max_new_tokens"] == PairedTrait.answer_tokens
    from interp.report.build import build_report

    info = build_report([misaligned_run], tmp_path / "m.pdf")
    assert info.pages >= 1
