"""`interp analyze` over a real (tiny-model) run: every section, and honest `missing` entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.mech.alignment import delta_subspace_angles
from interp.subliminal.stages import teacher_seed

ANALYSIS = {"enabled": True, "n_prompts": 12, "n_number_prompts": 4, "gradient_batches": 2,
            "gradient_batch_size": 2, "n_boot": 100, "backend": "nnsight",
            "entanglement": True, "entangle_prompts": 2, "entangle_top_k": 2,
            "detection": True, "judge_trials": 4, "judge_rows": 2, "incontext": True, "incontext_k": [1],
            "trajectories": True, "first_order": True}  # fmt: skip


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("an")
    cfg = tiny_subliminal_config()
    cfg["teacher"].update(
        {
            "mode": "finetuned",
            "answers_per_prompt": 1,
            "answer_filter": "none",
            "answer_max_new_tokens": 12,
        }
    )
    cfg["analysis"] = ANALYSIS
    cfg["students"][0]["checkpoint_every"] = 1  # same-init: a trajectory
    assert main(["run", str(write_config(tmp, cfg, "an")), "--out-dir", str(tmp)]) == 0
    return tmp / "an"


def test_every_section_with_cis(finetuned_run):
    res = json.loads((finetuned_run / "analysis.json").read_text())
    # every section (one target: no controls table, no first-order comparison on the matrix, no
    # update matrix over targets)
    assert set(res["missing"]) == {"data_controls", "first_order", "update_matrix", "matrix_mechanisms", "shift_ablation",
                                   "steer_sufficiency", "task_loss", "weight_split"}
    assert res["teacher_mode"] == "finetuned" and "needs >= 2 targets" in res["missing"]["matrix_mechanisms"]
    assert "needs >= 2 targets" in res["missing"]["first_order"] and "needs >= 2 targets" in res["missing"]["update_matrix"]
    g = res["detection"]["scan_gradient"]  # a teacher delta: each row's imitation gradient against it
    n_rows = len((finetuned_run / json.loads((finetuned_run / "summary.json").read_text())["artifacts"]["data"]["trait"]
                  / "dataset.jsonl").read_text().splitlines())  # fmt: skip
    assert g["n_pos"] == n_rows and 0 <= g["auroc"] <= 1
    assert set(res["trajectories"]["students"]) == {"same-init"}
    summary = json.loads((finetuned_run / "summary.json").read_text())
    for t, rec in summary["artifacts"]["teachers"].items():  # each teacher trained on its own seed stream
        manifest = json.loads((finetuned_run / rec["delta"]).with_name("manifest.json").read_text())
        assert manifest["params"]["seed"] == teacher_seed(summary["provenance"]["seed"], t)
    students = ["same-init", "control", "cross-model"]
    ua = res["update_alignment"]["students"]
    assert set(ua) == set(students)
    assert ua["cross-model"]["against"] == "teacher:tiny-gemma"  # its own base's teacher
    for s in students:
        o, sh = ua[s]["overall"], ua[s]["span_share"]
        cos, share, baseline = _update_alignment_by_hand(finetuned_run, summary, s, ua[s]["against"])
        # one seed: the mean is that seed's value, with no interval
        assert (o["mean"], o["lo"], o["hi"], o["n"]) == pytest.approx((cos, cos, cos, 1), abs=1e-6)
        assert ua[s]["per_seed"]["0"]["overall"] == pytest.approx(cos, abs=1e-6)
        assert ua[s]["per_seed"]["0"]["shares_teacher_init"] is False  # teachers train on a seed of their own
        assert (sh["mean"], sh["baseline"]) == pytest.approx((share, baseline), abs=1e-6)
        g = res["gradient_alignment"]["datasets"][s]
        assert len(g["cos"]) == 2 and g["frac_positive"] == np.mean([c > 0 for c in g["cos"]])  # 2 batches
        d = res["trait_direction"]["students"][s]
        assert len(d["cosine"]) == 2 and all(
            lo <= c <= hi for lo, c, hi in zip(d["lo"], d["cosine"], d["hi"])
        )
        if s == "same-init":  # paired with the control on the same prompt draws: the difference of cosines
            assert d["diff_vs_control"]["mean"] == pytest.approx(
                np.subtract(d["cosine"], d["control"]["cosine"]), abs=1e-9
            )
        pr = res["probes"]["students"][s]  # a share of its n prompts at each layer, not a mean probability
        assert pr["n"] == 12 and all(abs(x * 12 - round(x * 12)) < 1e-9 for x in pr["share_trait"])
    assert res["trait_direction"]["students"]["same-init"]["control"] is not None
    st = res["steering"]
    assert st["sufficiency"]["diff"]["mean"] == pytest.approx(
        st["sufficiency"]["steered"]["mean"] - st["sufficiency"]["base"]["mean"]
    )
    assert st["necessity"]["student"] == "same-init/seed0" and "random_direction" in st["necessity"]
    assert [r["metric"] for r in res["table"]][0].startswith("update cos")
    en = res["entanglement"]["targets"]["owl"]
    top = en["entangled"]["top"]
    assert len(top) == 2 and all(0 <= r["number"] <= 999 for r in top) and top[0]["shift"] >= top[1]["shift"]
    assert en["entangled"]["n_prompts"] == 2 and en["entangled"]["n_numbers"] == 1000
    assert set(en["random_numbers"]).isdisjoint(r["number"] for r in top)
    assert set(en["rates"]) == {"trait", "control"} and en["rates"]["trait"]["total_numbers"] > 0
    pr = en["prompting"]
    assert pr["diff"]["mean"] == pytest.approx(pr["entangled"] - pr["random"], abs=1e-5)
    idx = json.loads(
        next((finetuned_run / "stages").glob("record__same-init-seed0-*/index.json")).read_text()
    )
    assert (
        idx["entries"]["eval"]["shape"] == [12, 2, 64]
        and idx["entries"]["eval"]["backend"] == "nnsight"
    )


def _update_alignment_by_hand(run, summary, student, against):
    """cos(dW_student, dW_teacher) over all shared tensors, the share of the student's update in
    the teacher's top-8 singular subspaces (both sides) and its chance baseline, from dense
    matrices and a full SVD (the analysis works on the LoRA factors)."""
    from interp.lm.delta import Delta

    art = summary["artifacts"]
    s_d = Delta.load(run / art["students"][student]["0"] / "delta.safetensors").to_dense()
    t_d = Delta.load(run / art["teacher_deltas"][against.split(":", 1)[1]] / "delta.safetensors").to_dense()
    names = sorted(set(s_d) & set(t_d))
    assert names
    s_vec = torch.cat([s_d[n].double().flatten() for n in names])
    t_vec = torch.cat([t_d[n].double().flatten() for n in names])
    cos = float(s_vec @ t_vec / (s_vec.norm() * t_vec.norm()))
    inside = total = chance = 0.0
    for n in names:
        u, _, vh = torch.linalg.svd(t_d[n].double())
        sq = float(s_d[n].double().norm() ** 2)
        inside += float((u[:, :8].T @ s_d[n].double() @ vh[:8].T).norm() ** 2)
        total += sq
        chance += sq * 64 / s_d[n].numel()
    return cos, inside / total, chance / total


def test_imitation_alignment_matches_a_direct_recomputation(finetuned_run):
    """The gradient-alignment section and the trajectory's imitation-gradient alignment at each
    checkpoint, against the hard-label gradient recomputed here from the saved files."""
    from interp.analysis.trajectories import checkpoints
    from interp.lm.delta import Delta
    from interp.lm.models import Variant, completion_suffix
    from interp.lm.score import row_examples
    from interp.mech.gradient import descent_alignment, iter_imitation_gradients
    from interp.store.stages import read_jsonl

    res = json.loads((finetuned_run / "analysis.json").read_text())
    art = json.loads((finetuned_run / "summary.json").read_text())["artifacts"]
    rows = read_jsonl(finetuned_run / art["data"]["trait"] / "dataset.jsonl")[:4]  # 2 batches of 2
    teacher = Delta.load(finetuned_run / art["teacher_deltas"]["tiny-llama"] / "delta.safetensors").to_dense()
    steps = {r["step"]: r for r in res["trajectories"]["students"]["same-init"]["steps"]}
    cks = checkpoints(finetuned_run / art["students"]["same-init"]["0"])
    assert sorted(steps) == [0, *(s for s, _ in cks)]
    got = {}
    for step, path in [(0, None), cks[-1]]:
        model, tok = Variant("tiny-llama", delta_path=path).load("cpu")
        tok.padding_side = "right"
        grads = iter_imitation_gradients(model, tok, row_examples(tok, rows), list(teacher), 2, completion_suffix(tok))
        got[step] = descent_alignment(grads, teacher, n_boot=100, seed=0)["overall"]["cos"]
        assert steps[step]["gradient_cos"]["cos"] == pytest.approx(got[step], abs=1e-5)
    assert res["gradient_alignment"]["datasets"]["same-init"]["cos"] == pytest.approx(got[0], abs=1e-5)
    assert got[cks[-1][0]] != pytest.approx(got[0], abs=1e-6)  # the checkpoint is not the init


def test_reanalysis_is_cached(finetuned_run, capsys):
    before = json.loads((finetuned_run / "analysis.json").read_text())
    assert main(["analyze", str(finetuned_run)]) == 0
    after = json.loads((finetuned_run / "analysis.json").read_text())
    assert (
        after["update_alignment"] == before["update_alignment"]
        and after["steering"] == before["steering"]
    )
    assert "update cos" in capsys.readouterr().out


def test_prompt_teacher_reports_missing_sections(tmp_path):
    cfg = tiny_subliminal_config()
    cfg["students"] = cfg["students"][:1]
    cfg["analysis"] = ANALYSIS | {"backend": "hf"}
    assert main(["run", str(write_config(tmp_path, cfg, "p")), "--out-dir", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "p" / "analysis.json").read_text())
    assert (
        "no teacher delta" in res["missing"]["update_alignment"] and "update_alignment" not in res
    )
    assert "trait_direction" in res and "probes" in res


def test_analyze_unfinished_run_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main(["analyze", str(tmp_path / "half")]) == 2
    assert "summary.json not found" in capsys.readouterr().err


def test_lowrank_subspace_angles_match_full_svd():
    torch.manual_seed(0)
    b, a = torch.randn(300, 8), torch.randn(8, 200)
    d = {"model.layers.0.mlp.up_proj.weight": b @ a}
    same = delta_subspace_angles(d, d, rank=8)
    assert max(same.per_tensor["model.layers.0.mlp.up_proj.weight"]) < 1e-4
    other = {"model.layers.0.mlp.up_proj.weight": torch.randn(300, 8) @ a}
    ang = delta_subspace_angles(d, other, rank=8).per_tensor["model.layers.0.mlp.up_proj.weight"]
    assert min(ang) > 0.3  # random 8-dim subspaces of R^300 are far apart


def test_the_readme_python_api_example_runs(finetuned_run, capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(code.replace('"runs/quickstart"', repr(str(finetuned_run))), {})  # noqa: S102
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert re.fullmatch(r"cos\(student, teacher\) = -?\d\.\d{4} over \d+ tensors", first), out
    assert "layer 0:" in out


def test_the_entanglement_script_reads_the_section(finetuned_run):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "analyses" / "entanglement.py"
    out = subprocess.run([sys.executable, str(script), str(finetuned_run)], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    last = out.strip().splitlines()[-1]
    res = json.loads((finetuned_run / "analysis.json").read_text())
    d = res["entanglement"]["targets"]["owl"]["prompting"]["diff"]
    assert last.startswith("VERDICT hypothesis=entanglement result=") and "not testable" not in last, out
    assert "statistic=bootstrap_diff" in last and f"ci=[{d['lo']:.4g}, {d['hi']:.4g}]" in last, last


def test_the_report_shows_the_entangled_numbers(finetuned_run, tmp_path):
    import re

    from pypdf import PdfReader

    from interp.fmt import fmt_est
    from interp.report.build import build_report

    build_report([finetuned_run], tmp_path / "an.pdf")
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "an.pdf")).pages))
    en = json.loads((finetuned_run / "analysis.json").read_text())["entanglement"]["targets"]["owl"]
    assert "Token entanglement and subliminal prompting" in text
    assert fmt_est(en["prompting"]["diff"]) in text and str(en["entangled"]["top"][0]["number"]) in text


def test_the_base_and_the_prompted_base_are_recorded_from_one_load(finetuned_run, tmp_path, monkeypatch):
    """One model load (and one wrapper) per base for its two records; each student loads its own."""
    import shutil

    from interp.lm import models

    run = tmp_path / "an"
    shutil.copytree(finetuned_run, run)
    for d in (run / "stages").glob("record__*"):
        shutil.rmtree(d)
    loads, real = [], models.Variant.load
    monkeypatch.setattr(models.Variant, "load", lambda self, *a, **k: loads.append(self) or real(self, *a, **k))
    assert main(["analyze", str(run), "--only", "trait_direction"]) == 0
    bases = sorted(v.spec for v in loads if v.delta_path is None)
    assert bases == ["tiny-gemma", "tiny-llama"], loads
    assert sum(v.delta_path is not None for v in loads) == 3  # same-init, control, cross-model
    fresh = json.loads((run / "analysis.json").read_text())["trait_direction"]
    assert fresh == json.loads((finetuned_run / "analysis.json").read_text())["trait_direction"]
