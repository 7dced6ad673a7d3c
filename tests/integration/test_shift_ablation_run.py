"""`interp analyze --only shift_ablation` over a tiny trait-matrix run (three targets, prompted
teachers, one same-init arm, one seed): the section's fields, its pairing of each student with
its own teacher's direction (one student re-scored here by hand), the report's table and the
hypothesis script's verdict."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.fmt import fmt, fmt_est

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["owl", "cat", "dog"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sa")
    cfg = tiny_subliminal_config(train__objective="distill", train__lr=3e-2, train__epochs=2)
    cfg["trait"] = {"kind": "animal", "targets": TARGETS}
    cfg["students"] = [{"name": "same-init", "model": "teacher", "data": "trait"}]
    cfg["analysis"] = {"backend": "hf", "n_answer_rows": 10, "shift_ablation": True, "shift_ablation_layers": 1}
    assert main(["run", str(write_config(tmp, cfg, "sa")), "--out-dir", str(tmp)]) == 0
    assert main(["analyze", str(tmp / "sa"), "--only", "shift_ablation"]) == 0
    return tmp / "sa"


@pytest.fixture(scope="module")
def section(run):
    return json.loads((run / "analysis.json").read_text())["shift_ablation"]


def test_the_section_has_every_condition_with_gamma_p_and_fraction(run, section):
    summary = json.loads((run / "summary.json").read_text())
    assert section["targets"] == TARGETS and section["n_layers"] == 2 and section["single_layers"] == [0]
    assert section["n_rows"] == 10 and set(section["arms"]) == {"same-init"}
    arm = section["arms"]["same-init"]
    assert section["n_scorings"] == len(TARGETS) * 1 * 4
    ref = summary["matrix"]["arms"]["same-init"]  # the unablated gamma is the run's own
    assert arm["gamma"] == pytest.approx(ref["gamma"], abs=1e-6) and arm["p_gamma"] == pytest.approx(ref["p_gamma"])
    assert list(arm["conditions"]) == ["own:all", "own:L0", "other:all", "random:all"]
    for name, c in arm["conditions"].items():
        assert c["source"] == name.split(":")[0]
        assert c["n_permutations"] == 6 and 0 < c["p_gamma"] <= 1
        f = c["fraction_removed"]
        assert f["over"] == "targets" and f["n"] == len(TARGETS)  # one seed: the targets are the units
        assert f["mean"] == pytest.approx(1 - c["gamma"] / arm["gamma"], rel=1e-6)
        assert c["gamma"] == pytest.approx(np.mean(c["gamma_per_target"]), abs=1e-5)
    assert arm["conditions"]["own:L0"]["layers"] == [0] and arm["conditions"]["random:all"]["layers"] == "all"
    assert len(arm["direction_cosines"]["own_vs_other"]) == 2


def test_each_student_is_ablated_along_its_own_teachers_direction(run, section):
    """Re-score the second target's student by hand with its own teacher's and the next
    target's directions, read from the recordings: the section's shifts must be these."""
    from interp.analysis import matrix_mechanisms as mm
    from interp.analysis import shift_ablation as sa
    from interp.analysis.reader import AnalysisRun
    from interp.lm.models import Variant, load_model
    from interp.mech.shift_matrix import directions
    from interp.subliminal import matrix as mx

    ctx = AnalysisRun(run)
    rows = mm.answer_rows(ctx.a.n_answer_rows, ctx.cfg["seed"])
    base_acts = mm.record_answers(ctx, "base-tiny-llama", Variant("tiny-llama"), rows)  # cached stages
    teacher = [mm.record_answers(ctx, f"teacher-tiny-llama-{t}", Variant("tiny-llama", system=ctx.trait_for(t).system_prompt),
                                 rows) for t in TARGETS]  # fmt: skip
    v = directions(torch.stack(teacher), base_acts).float()  # [target, layer, d]
    i, t = 1, TARGETS[1]
    rel = ctx.art["students_by_target"]["same-init"][t]["0"]
    student, tok = Variant("tiny-llama", delta_path=run / rel / "delta.safetensors").load()
    base, _ = load_model("tiny-llama")
    conds = {"own:all": {0: v[i][0], 1: v[i][1]}, "other:all": {0: v[2][0], 1: v[2][1]}}
    scores = sa.ablated_log_odds(student, base, tok, ctx.trait_for(t), ctx.config.eval, conds, ctx.cfg["seed"])
    summary = json.loads((run / "summary.json").read_text())
    base_lo = np.array(summary["models"]["base"]["log_odds"])
    cols = [summary["matrix"]["candidates"].index(x) for x in TARGETS]
    plain = np.array([[summary["models"][f"same-init{'' if x == TARGETS[0] else ':' + x}/seed0"]["log_odds"] for x in TARGETS]])
    for c in conds:
        stored = section["arms"]["same-init"]["conditions"][c]
        abl = plain.copy()
        abl[0, i] = scores[c]
        gamma_t = mx.per_target_gamma(abl[0] - base_lo, cols)
        assert stored["gamma_per_target"][i] == pytest.approx(gamma_t[i], abs=1e-5), c
    assert np.abs(np.array(scores["own:all"]) - np.array(plain[0, i])).max() > 1e-4  # the ablation did something


def test_the_report_shows_the_table(run, section, tmp_path):
    from pypdf import PdfReader

    from interp.report.build import build_report

    build_report([run], tmp_path / "sa.pdf")
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "sa.pdf")).pages))
    assert "Shift ablation along the teachers' directions" in text
    arm = section["arms"]["same-init"]
    assert f"same-init nothing {fmt_est(arm['gamma_ci'])} {fmt(arm['p_gamma'])}" in text
    c = arm["conditions"]["random:all"]
    assert f"same-init random all {fmt_est(c['gamma_ci'])} {fmt(c['p_gamma'])} {fmt(c['fraction_removed']['mean'])}" in text
    assert "Hypothesis script analyses/shift_ablation.py tests:" in text


def test_the_hypothesis_script_reads_the_section(run, section):
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        import shift_ablation as script
    finally:
        sys.path.pop(0)
    out = subprocess.run([sys.executable, str(ROOT / "analyses" / "shift_ablation.py"), str(run)], capture_output=True,
                         text=True, timeout=120).stdout.strip().splitlines()  # fmt: skip
    conds = section["arms"]["same-init"]["conditions"]
    own, rnd = conds["own:all"]["fraction_removed"], conds["random:all"]["fraction_removed"]
    last = out[-1]
    assert last.startswith("VERDICT hypothesis=shift_ablation ") and f"effect={fmt(own['mean'])}" in last, out
    assert f"result={script.decide_fraction(own, rnd)} " in last and last.endswith(f"n={len(TARGETS)}"), last
    assert any(line.strip().startswith("own:L0: gamma") for line in out), out
