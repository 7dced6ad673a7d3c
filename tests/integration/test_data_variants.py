"""The data-side variants of issue 11 run end to end on tiny models: a divergence mask leaves
out exactly the positions where the trait and control teachers' argmax differ, its random
control leaves out as many, and the scan-filtered student trains on the half of the rows the
scan scores lowest. `interp analyze` then reports divergence, detection, the in-context control
and the controls table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_subliminal_config, write_config
from scipy import stats

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


def _shifts(run, arm, seed=0):
    """[target, candidate] log-odds shifts of `arm`'s seed-`seed` students over the base, from
    their eval.json files (the summary's matrix is not read)."""
    s = json.loads((run / "summary.json").read_text())
    evals, primary = s["artifacts"]["evals"], s["trait"]["target"]

    def log_odds(label):
        return np.array(json.loads((run / evals[label] / "eval.json").read_text())["logprob"]["log_odds"])

    base = log_odds("base")
    return np.array([log_odds(f"{arm}{'' if t == primary else ':' + t}/seed{seed}") - base
                     for t in s["trait"]["targets"]])  # fmt: skip


def _per_target_gamma(shifts, cols):
    own = shifts[np.arange(len(cols)), cols]
    return own - (shifts[:, cols].sum(axis=1) - own) / (len(cols) - 1)


def _t(values):
    """mean, lo, hi of the 95% t-interval, by the formula."""
    x = np.asarray(values, float)
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return x.mean(), x.mean() - half, x.mean() + half


def _auroc(pos, neg):
    """P(a trait row outscores a control row), ties half: the Mann-Whitney statistic."""
    return np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])


def _expected(run, script):
    """(effect, lo, hi, result) each script must print, recomputed here from raw artifacts."""
    an = json.loads((run / "analysis.json").read_text())
    cands, targets = an["first_order"]["candidates"], an["first_order"]["targets"]
    cols = [cands.index(t) for t in targets]
    if script == "detection":  # two targets: mean AUROC - 0.5, t over targets
        aucs = [an["detection"]["targets"][t]["classifier"]["auroc"] - 0.5 for t in targets]
        m, lo, hi = _t(aucs)
        return m, lo, hi, "supported" if lo > 0 else "not supported" if hi < 0 else "inconclusive"
    if script == "data_controls":  # per-target gamma of the masked arm minus the unmodified one, seed 0
        d = _per_target_gamma(_shifts(run, "mask-divergence"), cols) - _per_target_gamma(_shifts(run, "same-init"), cols)
        m, lo, hi = _t(d)
        return m, lo, hi, "supported" if hi < 0 else "not supported" if lo > 0 else "inconclusive"
    if script == "incontext":  # no raw per-question values are kept: the section's own interval
        r = an["incontext"]["by_k"]["1"]
        m, lo, hi = r["gamma"], r["gamma_ci"]["lo"], r["gamma_ci"]["hi"]
        ok = lo > 0 and r["p_gamma"] < 0.05
        return m, lo, hi, "supported" if ok else "not supported" if hi < 0 else "inconclusive"
    # first_order: per target, Pearson of predicted vs observed shifts over candidates; t over targets
    pred, obs = np.array(an["first_order"]["arms"]["scan-low"]["predicted"]), _shifts(run, "scan-low")
    m, lo, hi = _t([np.corrcoef(p, o)[0, 1] for p, o in zip(pred, obs)])
    ok = lo > 0 and an["first_order"]["arms"]["scan-low"]["p_row_correlation"] < 0.05
    return m, lo, hi, "supported" if ok else "not supported" if hi < 0 else "inconclusive"


@pytest.mark.parametrize(("script", "args", "stat"), [
    ("detection", ["--detector", "classifier"], "auroc_classifier"),
    ("data_controls", ["--arm", "mask-divergence"], "gamma_difference"),
    ("incontext", [], "gamma_nats"),
    ("first_order", ["--arm", "scan-low"], "row_correlation"),
])  # fmt: skip
def test_the_hypothesis_scripts_print_what_the_artifacts_give(variant_run, script, args, stat):
    """Each verdict's effect, interval and result equal a recomputation from the run's raw
    artifacts (eval log-odds, AUROCs, first-order predictions), not only a well-formed line."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "analyses" / f"{script}.py"), str(variant_run), *args],
                         capture_output=True, text=True, timeout=120, cwd=root).stdout  # fmt: skip
    m = re.search(rf"^VERDICT hypothesis={script} result=(?P<result>[a-z ]+) statistic={stat}:\S+ "
                  r"effect=(?P<effect>\S+) ci=\[(?P<lo>\S+), (?P<hi>\S+)\]", out.strip().splitlines()[-1])  # fmt: skip
    assert m, out
    effect, lo, hi, result = _expected(variant_run, script)
    # the line prints 4 significant digits; the raw log-odds are stored to 6 decimals
    assert float(m["effect"]) == pytest.approx(effect, rel=1e-3, abs=2e-5), out
    assert float(m["lo"]) == pytest.approx(lo, rel=1e-3, abs=2e-4), out
    assert float(m["hi"]) == pytest.approx(hi, rel=1e-3, abs=2e-4), out
    assert m["result"] == result, out


@pytest.mark.parametrize("side", ["more", "less"])
def test_the_data_controls_script_sets_two_arms_against_each_other(variant_run, side):
    """`--arm A --against B --direction more|less`: A's per-target gamma minus B's on their shared
    seeds, t over targets, decided on the side asked for (the top-k vs random-k claims)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "analyses" / "data_controls.py"), str(variant_run), "--arm",
                          "scan-low", "--against", "random-half", "--direction", side],
                         capture_output=True, text=True, timeout=120, cwd=root).stdout  # fmt: skip
    m = re.search(r"^VERDICT hypothesis=data_controls result=(?P<result>[a-z ]+) statistic=gamma_difference:\S+ "
                  r"effect=(?P<effect>\S+) ci=\[(?P<lo>\S+), (?P<hi>\S+)\]", out.strip().splitlines()[-1])  # fmt: skip
    assert m, out
    an = json.loads((variant_run / "analysis.json").read_text())
    cands, targets = an["first_order"]["candidates"], an["first_order"]["targets"]
    cols = [cands.index(t) for t in targets]
    effect, lo, hi = _t(_per_target_gamma(_shifts(run=variant_run, arm="scan-low"), cols)
                        - _per_target_gamma(_shifts(run=variant_run, arm="random-half"), cols))  # fmt: skip
    sign = 1 if side == "more" else -1
    result = "supported" if sign * lo > 0 and sign * hi > 0 else "not supported" if sign * lo < 0 and sign * hi < 0 else "inconclusive"
    assert float(m["effect"]) == pytest.approx(effect, rel=1e-3, abs=2e-5), out
    assert float(m["lo"]) == pytest.approx(lo, rel=1e-3, abs=2e-4) and float(m["hi"]) == pytest.approx(hi, rel=1e-3, abs=2e-4), out
    assert m["result"] == result, out


def test_the_scan_auroc_is_the_mann_whitney_statistic_of_the_saved_scores(variant_run):
    an = json.loads((variant_run / "analysis.json").read_text())
    for t in ("owl", "cat"):
        (trait,) = (variant_run / "stages").glob(f"scan__{t}__trait-*")
        (control,) = (variant_run / "stages").glob(f"scan__{t}__control-*")
        pos, neg = ([r["llr_per_token"] for r in read_jsonl(d / "scores.jsonl")] for d in (trait, control))
        scan = an["detection"]["targets"][t]["scan"]
        assert scan["auroc"] == pytest.approx(_auroc(pos, neg)) and (scan["n_pos"], scan["n_neg"]) == (8, 8)
        assert scan["mean_trait"] == pytest.approx(np.mean(pos)) and scan["mean_control"] == pytest.approx(np.mean(neg))


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
    # across arms: predicted per-target gamma (standardised within each arm) against the observed
    # one of every (arm, target) cell; Pearson with its Fisher-z interval, by the formulas
    cols = [fo["candidates"].index(t) for t in fo["targets"]]
    seeds = {"same-init": (0, 1)}
    z, observed = [], []
    for name, a in fo["arms"].items():
        p = np.asarray(a["predicted_per_target_gamma"])
        z += list((p - p.mean()) / p.std())
        observed += list(np.mean([_per_target_gamma(_shifts(variant_run, name, k), cols)
                                  for k in seeds.get(name, (0,))], axis=0))  # fmt: skip
    r = np.corrcoef(z, observed)[0, 1]
    half = stats.norm.ppf(0.975) / np.sqrt(len(z) - 3)
    x = fo["across_arms"]
    assert x["n"] == 10 and x["n_arms"] == 5 and x["pearson"] == pytest.approx(r, abs=1e-4)
    assert x["pearson_ci"] == pytest.approx([np.tanh(np.arctanh(r) - half), np.tanh(np.arctanh(r) + half)], abs=1e-4)


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
