"""The data-side variants of issue 11 run end to end on tiny models: a divergence mask leaves
out exactly the positions where the trait and control teachers' argmax differ, its random
control leaves out as many, and the scan-filtered student trains on the half of the rows the
scan scores lowest. `interp analyze` then reports divergence, detection, the in-context control
and the controls table."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.store.stages import read_jsonl


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    cfg = tiny_subliminal_config(data__n_prompts=12, data__n_keep=8, train__objective="distill")
    cfg["trait"] = {"kind": "animal", "targets": ["owl", "cat"]}
    # a strongly steered teacher and its random-direction control: their argmax differ somewhere
    cfg["teacher"] |= {"mode": "steered", "steer_scale": 4.0, "control": "random"}
    cfg["analysis"] = {"backend": "hf", "n_prompts": 4, "n_number_prompts": 2, "n_answer_rows": 10, "n_boot": 50,
                       "subspace_rank": 0, "detection": True, "judge_trials": 4, "judge_rows": 2, "incontext": True,
                       "incontext_k": [1, 100], "trajectories": True, "first_order": True,
                       "first_order_rows": 8}  # fmt: skip
    cfg["students"] = [
        {"name": "same-init", "data": "trait", "seeds": [0, 1], "checkpoint_every": 1},
        {"name": "control", "data": "control"},
        {"name": "mask-divergence", "mask": "divergence", "seeds": [0]},
        {"name": "mask-random", "mask": "random", "seeds": [0]},
        {"name": "scan-low", "subset": "scan-low", "seeds": [0]},
        {"name": "random-half", "subset": "random-half", "seeds": [0]},
    ]
    assert main(["run", str(write_config(tmp, cfg)), "--out-dir", str(tmp)]) == 0
    sections = "divergence,detection,incontext,data_controls,trajectories"  # the rest: not requested
    assert main(["analyze", str(tmp / "tiny"), "--only", sections]) == 0
    # a second --only run adds its section and keeps the first run's
    assert main(["analyze", str(tmp / "tiny"), "--only", "first_order"]) == 0
    return tmp / "tiny"


def _student(run, name):
    art = json.loads((run / "summary.json").read_text())["artifacts"]["students"][name]
    return {seed: run / rel for seed, rel in art.items()}


def test_per_student_seeds_and_masks_leave_out_the_divergence_positions(variant_run):
    assert sorted(_student(variant_run, "same-init")) == ["0", "1"]
    assert sorted(_student(variant_run, "mask-divergence")) == ["0"]
    (div_dir,) = (variant_run / "stages").glob("divergence__owl-*")
    div = read_jsonl(div_dir / "divergence.jsonl")
    n_div = sum(len(d["positions"]) for d in div)
    assert 0 < n_div < sum(d["n_positions"] for d in div)
    logs = {n: json.loads((_student(variant_run, n)["0"] / "train_log.json").read_text())
            for n in ("same-init", "mask-divergence", "mask-random")}  # fmt: skip
    total = logs["same-init"]["loss_tokens"]
    assert total == sum(d["n_positions"] for d in div)
    assert logs["mask-divergence"]["loss_tokens"] == logs["mask-random"]["loss_tokens"] == total - n_div


def test_the_scan_filtered_student_trains_on_the_lowest_scoring_half(variant_run):
    (scan_dir,) = (variant_run / "stages").glob("scan__owl__trait-*")
    scores = [r["llr_per_token"] for r in read_jsonl(scan_dir / "scores.jsonl")]
    logs = {n: json.loads((_student(variant_run, n)["0"] / "train_log.json").read_text())
            for n in ("same-init", "scan-low", "random-half")}  # fmt: skip
    assert logs["scan-low"]["examples"] == logs["random-half"]["examples"] == len(scores) // 2
    assert logs["same-init"]["examples"] == len(scores)
    summary = json.loads((variant_run / "summary.json").read_text())
    assert set(summary["students"]) >= {"scan-low", "random-half", "mask-random"}


def test_analyze_reports_the_data_sections(variant_run):
    an = json.loads((variant_run / "analysis.json").read_text())
    assert an["missing"]["probes"].startswith("not requested (interp analyze --only divergence,") and "probes" not in an
    for t in ("owl", "cat"):
        det = an["detection"]["targets"][t]
        # tiny random nets are near uniform: the scan's planted effect is tested in test_score.py
        assert det["scan"]["n_pos"] == det["scan"]["n_neg"] == 8 and det["judge"]["n_trials"] == 4
        assert det["classifier"]["n_train"] == 8
        assert an["divergence"]["targets"][t]["divergent"] > 0
    assert an["detection"]["scan_gradient"] is None and "no teacher delta" in an["detection"]["why_no_scan_gradient"]
    ic = an["incontext"]
    assert set(ic["by_k"]) == {"1"} and "100" in ic["skipped"]  # 1 row of a char tokenizer fits 512 tokens
    assert ic["by_k"]["1"]["n_permutations"] == 2 and ic["by_k"]["1"]["gamma"] is not None
    arms = {r["arm"]: r for r in an["data_controls"]["rows"]}
    assert arms["mask-divergence"]["variant"] == "mask divergence" and arms["same-init"]["variant"] == "unmodified"
    assert arms["same-init"]["seeds"] == [0, 1] and "in-context k=1" in arms
    m = arms["mask-divergence"]["minus_unmodified"]
    assert m["against"] == "same-init" and m["seeds"] == [0] and m["n"] == 2 and "minus_unmodified" not in arms["same-init"]
    for name in ("same-init", "mask-divergence", "scan-low"):  # the per-target gammas average to gamma
        assert arms[name]["gamma_ci_targets"]["mean"] == pytest.approx(arms[name]["gamma"], abs=1e-9)


@pytest.mark.parametrize(("script", "args", "expect"), [
    ("detection", ["--detector", "classifier"], "detection result=(supported|not supported|inconclusive) statistic=auroc_classifier:"),
    ("data_controls", ["--arm", "mask-divergence"], "data_controls result=(supported|not supported|inconclusive) statistic=gamma_difference:"),
    ("incontext", [], "incontext result=(supported|not supported|inconclusive) statistic=gamma_nats:"),
    ("first_order", ["--arm", "scan-low"], "first_order result=(supported|not supported|inconclusive) statistic=row_correlation:"),
])  # fmt: skip
def test_the_hypothesis_scripts_are_testable_on_a_run_with_the_sections(variant_run, script, args, expect):
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "analyses" / f"{script}.py"), str(variant_run), *args],
                         capture_output=True, text=True, timeout=120, cwd=root).stdout  # fmt: skip
    assert re.search("^VERDICT hypothesis=" + expect, out.strip().splitlines()[-1]), out


def test_first_order_covers_every_trait_arm_and_a_later_only_keeps_earlier_sections(variant_run):
    an = json.loads((variant_run / "analysis.json").read_text())
    assert "divergence" in an and "detection" in an  # from the first --only
    assert "divergence" in an["provenance"]["kept_from_earlier_analysis"]
    assert an["missing"]["probes"].startswith("not requested")
    fo = an["first_order"]
    assert set(fo["arms"]) == {"same-init", "mask-divergence", "mask-random", "scan-low", "random-half"}
    n_cands = len(fo["candidates"])
    for a in fo["arms"].values():
        assert len(a["predicted"]) == 2 and len(a["predicted"][0]) == n_cands
    # the masks and subsets change the loss, so the prediction: they differ from the unmodified arm's
    for arm in ("mask-divergence", "scan-low"):
        assert fo["arms"][arm]["predicted"] != fo["arms"]["same-init"]["predicted"]
        assert fo["arms"][arm]["stage"] != fo["arms"]["same-init"]["stage"]
    assert fo["across_arms"]["n"] == 10 and fo["across_arms"]["n_arms"] == 5 and -1 <= fo["across_arms"]["pearson"] <= 1


def test_trajectories_read_every_checkpoint_and_match_a_recomputation(variant_run):
    import torch
    from safetensors.torch import load_file

    from interp.analysis.trajectories import checkpoints, vector_cosines
    from interp.lm.models import Variant, format_prompt
    from interp.lm.record import residual_stream
    from interp.subliminal.teacher import GENERAL_PROMPTS
    from interp.subliminal.traits import make_trait

    tr = json.loads((variant_run / "analysis.json").read_text())["trajectories"]["students"]
    assert set(tr) == {"same-init"}  # the only entry that saved checkpoints
    d = _student(variant_run, "same-init")["0"]
    cks = checkpoints(d)
    assert [s for s, _ in cks] == [1, 2] and [r["step"] for r in tr["same-init"]["steps"]] == [0, 1, 2]
    last, final = load_file(str(cks[-1][1])), load_file(str(d / "delta.safetensors"))
    assert last.keys() == final.keys() and all(torch.equal(last[k], final[k]) for k in final)
    prompts = list(GENERAL_PROMPTS[:4])  # analysis n_prompts = 4

    def acts(v):
        model, tok = v.load("cpu")
        return residual_stream(model, tok, [format_prompt(tok, u, v.system) for u in prompts]).float()

    base = acts(Variant("tiny-llama"))
    owl = make_trait("animal", "owl", None, ["owl", "cat"], None)  # the primary target's prompt
    v_t = acts(Variant("tiny-llama", system=owl.system_prompt)).mean(0) - base.mean(0)
    again = vector_cosines(acts(Variant("tiny-llama", delta_path=cks[0][1])), base, v_t)
    assert again["mean"] == pytest.approx(tr["same-init"]["steps"][1]["vector_cos"]["mean"], abs=1e-5)
    # gamma over the two targets at each step; the last step's is the run's own for seed 0
    g = tr["same-init"]["gamma_steps"]
    assert [r["step"] for r in g] == [0, 1, 2] and g[0]["gamma"] == 0.0
    arm = json.loads((variant_run / "summary.json").read_text())["matrix"]["arms"]["same-init"]
    assert g[-1]["gamma"] == pytest.approx(arm["gamma_per_seed"][0], abs=1e-5)
    assert g[1]["gamma"] != pytest.approx(g[-1]["gamma"], abs=1e-9)  # step 1 is its own checkpoint


def test_the_report_shows_the_first_order_prediction_per_arm(variant_run, tmp_path):
    import re

    from pypdf import PdfReader

    from interp.fmt import fmt
    from interp.report.build import build_report

    build_report([variant_run], tmp_path / "v.pdf")
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(tmp_path / "v.pdf")).pages))
    assert "The theorem's first step: predicted vs observed shifts" in text
    fo = json.loads((variant_run / "analysis.json").read_text())["first_order"]
    for name, arm in fo["arms"].items():
        assert f"{name} {fmt(arm['predicted_gamma'])} {fmt(arm['observed_gamma'])}" in text, name
