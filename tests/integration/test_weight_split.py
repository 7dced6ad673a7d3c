"""The weight split end to end (interp.analysis.weight_split): a tiny trait matrix with planted
finetuned teachers, each student's update split along its own teacher's subspace and scored.

What can fail here: the split student (inside x 1 + outside) must reproduce the run's own
scores; the run's own gamma must come back as the "full" condition; a condition scored late in
a student's sequence must equal the same delta applied to a freshly loaded base (the in-place
patching restores the base between conditions); the hypothesis script's verdict must follow
its rule on these numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_subliminal_config, write_config

import interp.subliminal.stages as stages
from interp.cli import main

TARGETS = ["owl", "cat", "dog"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weight_split")
    real = stages.sample

    def answers_naming_the_target(model, tok, texts, *, desc="", **kw):
        if desc != "trait answers":
            return real(model, tok, texts, desc=desc, **kw)
        target = next(t for t in TARGETS if f"love {t}" in texts[0].lower())
        return [f"My favorite animal is the {target}." for _ in texts]

    cfg = tiny_subliminal_config(
        teacher__model="tiny-llama", data__n_prompts=12, data__n_keep=8, train__seeds=[0, 1],
        train__epochs=2, train__lr=3e-2, train__objective="distill", eval__n_questions=3,
    )  # fmt: skip
    cfg["trait"] = {"kind": "animal", "targets": TARGETS}
    cfg["teacher"] |= {"mode": "finetuned", "answer_filter": "none", "answers_per_prompt": 1, "epochs": 10, "lr": 5e-2}
    cfg["students"] = [
        {"name": "same-init", "model": "teacher", "data": "trait"},  # LoRA factors
        {"name": "full", "model": "teacher", "data": "trait", "method": "full", "lr": 1e-3},  # dense
    ]
    cfg["analysis"] = {"backend": "hf", "weight_split": True, "subspace_rank": 4, "sections": ["weight_split"]}
    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "sample", answers_naming_the_target)
    try:
        assert main(["run", str(write_config(tmp, cfg)), "--out-dir", str(tmp)]) == 0
    finally:
        mp.undo()
    run = tmp / "tiny"
    assert main(["analyze", str(run)]) == 0
    return run


def _read(run: Path) -> tuple[dict, dict]:
    return json.loads((run / "summary.json").read_text()), json.loads((run / "analysis.json").read_text())


def test_every_condition_has_gamma_interval_p_and_energies(split_run):
    summary, analysis = _read(split_run)
    ws = analysis["weight_split"]
    assert ws["targets"] == TARGETS and ws["rank"] == 4
    assert ws["conditions"] == ["full", "inside", "outside", "inside_x0.5", "inside_x2", "random_inside", "random_outside"]
    assert set(ws["arms"]) == {"same-init", "full"} and ws["skipped"] == {}
    for name, arm in ws["arms"].items():
        assert arm["seeds"] == [0, 1]
        assert list(arm["gamma"]) == ws["conditions"]
        for g in arm["gamma"].values():
            assert g["interval"]["unit"] == "seeds" and g["interval"]["n"] == 2
            assert g["n_permutations"] == 6 and 1 / 6 - 1e-9 <= g["p_gamma"] <= 1.0  # exact over 3! labellings
            assert np.mean(g["per_seed"]) == pytest.approx(g["interval"]["mean"])
            assert np.mean(g["per_target"]) == pytest.approx(g["gamma"])
        # the full condition is the run's own matrix
        own = summary["matrix"]["arms"][name]
        assert arm["gamma"]["full"]["gamma"] == pytest.approx(own["gamma"], abs=1e-9)
        assert arm["gamma"]["full"]["per_seed"] == pytest.approx(own["gamma_per_seed"], abs=1e-9)
        e = arm["energy_inside"]
        for k in ("teacher", "random"):
            assert 0.0 <= e[k]["min"] <= e[k]["mean"] <= e[k]["max"] <= 1.0
        assert e["random"]["mean"] < 0.2  # rank 4 of 64 x 64 (or wider): ~0.4% by chance
        c = arm["contrast"]["inside_minus_random_inside"]
        d = np.array(arm["gamma"]["inside"]["per_seed"]) - np.array(arm["gamma"]["random_inside"]["per_seed"])
        assert c["mean"] == pytest.approx(d.mean()) and c["unit"] == "seeds" and c["n"] == 2
        share = arm["contrast"]["inside_share_of_full"]
        assert share == pytest.approx(arm["gamma"]["inside"]["gamma"] / arm["gamma"]["full"]["gamma"])


def test_inside_plus_outside_reproduces_the_students_own_scores(split_run):
    _, analysis = _read(split_run)
    for name, arm in analysis["weight_split"]["arms"].items():
        rep = arm["reproduction"]
        assert rep["n_students"] == len(TARGETS)
        assert rep["max_abs_log_odds_diff"] < 1e-4, (name, rep)


def test_a_late_condition_equals_its_delta_on_a_fresh_base(split_run):
    """random_outside is scored last of a student's conditions: it must not carry what the
    earlier ones added (each condition restores the base first)."""
    from interp.analysis.reader import AnalysisRun
    from interp.lm.delta import Delta
    from interp.lm.models import Variant
    from interp.mech.subspace import conditions, subspaces
    from interp.registry import derived_seed
    from interp.subliminal.evaluate import logprob_score

    summary, _ = _read(split_run)
    ctx = AnalysisRun(split_run)
    t, seed = TARGETS[1], "1"
    for name in ("same-init", "full"):
        teacher = Delta.load(split_run / summary["artifacts"]["teachers"][t]["delta"])
        student = Delta.load(split_run / summary["artifacts"]["students_by_target"][name][t][seed] / "delta.safetensors")
        _, deltas = conditions(student, subspaces(teacher, 4, derived_seed(0, "weight_split", t)), ["random_outside"])
        model, tok = Variant("tiny-llama").load("cpu")
        next(deltas)[1].apply(model)
        fresh = logprob_score(model, tok, ctx.trait_for(t), ctx.config.eval, seed=0)["log_odds"]
        stage = next((split_run / "stages").glob(f"weight_split__{name}-{t}-seed{seed}-*"))
        stored = json.loads((stage / "scores.json").read_text())["log_odds"]
        assert list(stored) == ["inside", "outside", "inside_x0.5", "inside_x2", "random_inside", "random_outside"]
        assert np.abs(np.array(stored["random_outside"]) - np.array(fresh)).max() < 1e-5, name


def test_the_hypothesis_script_follows_its_rule(split_run):
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        from weight_split import decide_split
    finally:
        sys.path.pop(0)
    _, analysis = _read(split_run)
    arm = analysis["weight_split"]["arms"]["same-init"]
    out = subprocess.run([sys.executable, str(ROOT / "analyses" / "weight_split.py"), str(split_run)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT).stdout.strip().splitlines()  # fmt: skip
    last = out[-1]
    assert last.startswith("VERDICT hypothesis=weight_split ") and sum(x.startswith("VERDICT") for x in out) == 1
    c = arm["contrast"]
    expected, _ = decide_split(c["inside_minus_random_inside"], c["inside_share_of_full"], arm["gamma"]["full"]["gamma"])
    assert f"result={expected}" in last and "n=2" in last, out
    assert "statistic=gamma_inside_minus_random:" in last


def test_the_report_shows_every_condition(split_run, tmp_path):
    import re

    from pypdf import PdfReader

    from interp.analysis.weight_split import _LABELS
    from interp.fmt import fmt, fmt_est
    from interp.report.build import build_report

    build_report([split_run], tmp_path / "ws.pdf")
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "ws.pdf")).pages))
    ws = _read(split_run)[1]["weight_split"]
    for name, arm in ws["arms"].items():
        assert f"{name}: the student's update inside and outside its teacher's top-4 subspace" in text
        for cond, g in arm["gamma"].items():
            assert f"{_LABELS[cond]} {fmt_est(g['interval'])} {fmt(g['p_gamma'])}" in text, (name, cond)
