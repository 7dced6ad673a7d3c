"""The `steer_sufficiency` analysis unit (interp.analysis.steer_sufficiency): its plan, its
statistics on hand-made numbers, its hypothesis script's decision, its config fields, and a
planted case on a tiny model.

The planted case: a tiny llama; u_i is the (unit) gradient of the log-odds of target i's
candidate with respect to a vector added to block 0's output at every position, computed here
with a hook of this file's own (not `add_direction`). Calling u_i target i's teacher direction,
adding alpha u_i at block 0 must raise target i's log-odds (to first order by alpha |grad|) and
give gamma > 0 over the targets, while a random direction orthogonal to every u_i (no first-order
effect) must move target i's log-odds far less.
"""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import load_script, tiny_subliminal_config, write_config
from scipy import stats

from interp.analysis import shift_ablation as sa
from interp.analysis import steer_sufficiency as ss
from interp.config import ConfigError
from interp.fmt import fmt, fmt_est
from interp.registry import load_experiment

TARGETS = ["owl", "cat", "dog", "fox"]
ALPHA = 0.02  # small enough that the first-order term dominates on the tiny model (|grad| ~ 16-19)


def _trait(target: str):
    """Target's trait over one candidate list for every target, in one order (as a run's config makes it)."""
    from interp.subliminal.traits import DEFAULT_CANDIDATES, make_trait

    return make_trait("animal", target, None, [*TARGETS, *(c for c in DEFAULT_CANDIDATES["animal"] if c not in TARGETS)][:16])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _script():
    return load_script("steer_sufficiency")


# ---------------------------------------------------------------- the plan


def test_the_cells_are_own_then_random_over_layers_and_scales():
    plan = ss.plan_cells([3, 11], [1.0, 4.0])
    assert plan == [("own", 3, 1.0), ("own", 3, 4.0), ("own", 11, 1.0), ("own", 11, 4.0),
                    ("random", 3, 1.0), ("random", 3, 4.0), ("random", 11, 1.0), ("random", 11, 4.0)]  # fmt: skip
    names = [ss.cell_name(c) for c in ss.plan_cells([0], [0.1, 0.1000001, -2.0])]
    assert len(set(names)) == 6 and names[0] == "own:L0:x0.1"
    with pytest.raises(ValueError, match=">= 1 layer"):
        ss.plan_cells([], [1.0])


def test_the_random_control_has_the_own_directions_norm():
    gen = torch.Generator().manual_seed(0)
    own = torch.randn(3, 2, 8, generator=gen) * torch.tensor([1.0, 5.0])[None, :, None]
    unit = torch.randn(3, 2, 8, generator=gen)
    rnd = ss.matched_random(own, unit)
    torch.testing.assert_close(rnd.norm(dim=-1), own.norm(dim=-1))
    torch.testing.assert_close(rnd / rnd.norm(dim=-1, keepdim=True), unit / unit.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="differ in shape"):
        ss.matched_random(own, unit[:2])


def test_the_scale_reference_on_hand_made_vectors():
    own = torch.zeros(2, 2, 4)
    own[0, 1, :2] = torch.tensor([3.0, 4.0])  # norm 5
    own[1, 1, 3] = 1.0  # norm 1
    base = torch.zeros(3, 2, 4)
    base[:, 1, 0] = torch.tensor([2.0, -10.0, 6.0])  # norms 2, 10, 6: median 6
    ref = ss.scale_reference(own, base, [1])
    assert ref == {"1": {"direction_norm": 3.0, "base_resid_norm": 6.0, "direction_norm_per_target": [5.0, 1.0]}}


# ---------------------------------------------------------------- the statistics


def _shifts() -> tuple[np.ndarray, list[int], np.ndarray]:
    """[target, candidate] shifts over 3 targets: a drift every row shares plus 1 + 0.2 i on
    row i's own column, so gamma = mean own part = 1.2 and the drift cancels."""
    cols = [0, 2, 4]
    drift = np.array([0.03, -0.2, 0.05, 0.1, -0.04])
    own = np.zeros((3, 5))
    for i, c in enumerate(cols):
        own[i, c] = 1 + 0.2 * i
    return drift + own, cols, own


def test_gamma_of_the_steered_bases_with_its_permutation_p_and_interval_over_targets():
    shifts, cols, own = _shifts()
    res = ss.gamma_summary(shifts, cols)
    # per target the drift on its own column minus its mean on the other targets' columns stays
    # (drift on columns 0, 2, 4: 0.03, 0.05, -0.04); it cancels in the mean over targets only
    per_target = [1.0 + 0.03 - 0.005, 1.2 + 0.05 + 0.005, 1.4 - 0.04 - 0.04]
    assert res["gamma"] == pytest.approx(1.2) and res["gamma_per_target"] == pytest.approx(per_target)
    assert res["p_gamma"] == pytest.approx(1 / 6) and res["n_permutations"] == 6  # the top of 3! orderings
    ci = res["gamma_ci"]
    lo, hi = stats.t.interval(0.95, 2, loc=1.2, scale=stats.sem(per_target))
    assert (ci["mean"], ci["lo"], ci["hi"], ci["n"], ci["over"]) == pytest.approx((1.2, lo, hi, 3, "targets"))
    next_ = np.zeros_like(own)  # each row's bump moved to the next target's column
    for i in range(3):
        next_[i, cols[(i + 1) % 3]] = own[i, cols[i]]
    away = ss.gamma_summary(shifts - own + next_, cols)
    assert away["gamma"] == pytest.approx(-1.2 / 2) and away["p_gamma"] > 0.5


def test_the_rate_shift_is_paired_by_target():
    res = ss.rate_shift(np.array([0.5, 0.3, 0.1]), np.array([0.1, 0.1, 0.1]))
    assert res["mean"] == pytest.approx(0.2) and res["per_target"] == pytest.approx([0.4, 0.2, 0.0])
    lo, hi = stats.t.interval(0.95, 2, loc=0.2, scale=stats.sem([0.4, 0.2, 0.0]))
    assert (res["lo"], res["hi"], res["n"]) == pytest.approx((lo, hi, 3))


def test_own_versus_control_is_a_one_sided_paired_t_test():
    own, rnd = np.array([2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0])  # differences 1, 2, 3
    res = ss.versus_control(own, rnd)
    t = 2.0 / (1.0 / np.sqrt(3))  # mean 2, sd 1
    assert res["mean"] == pytest.approx(2.0) and res["p"] == pytest.approx(stats.t.sf(t, 2))
    assert ss.versus_control(rnd, own)["p"] == pytest.approx(1 - stats.t.sf(t, 2))  # the other way: p > 0.5
    assert ss.versus_control(own, own - 1)["p"] is None  # no spread: no test


def test_each_own_cell_is_compared_with_the_random_cell_at_its_layer_and_scale():
    shifts, cols, own = _shifts()
    plan = ss.plan_cells([0, 1], [2.0])  # own L0, own L1, random L0, random L1
    base = np.zeros((3, 5))
    steered = np.stack([shifts, shifts - own + 0.5 * own, shifts - own, shifts - own + 0.5 * own])
    ref = {"0": {"direction_norm": 3.0, "base_resid_norm": 6.0}, "1": {"direction_norm": 1.0, "base_resid_norm": 0.0}}
    cells = ss.summarise_cells(plan, base, steered, cols, np.full(3, 0.1), np.full((4, 3), 0.3), ref)
    assert [(c["source"], c["layer"]) for c in cells] == [("own", 0), ("own", 1), ("random", 0), ("random", 1)]
    assert cells[0]["scale_ratio"] == pytest.approx(2.0 * 3.0 / 6.0) and cells[1]["scale_ratio"] is None
    assert cells[0]["vs_random"]["mean"] == pytest.approx(1.2)  # own L0 has all of gamma, random L0 none
    assert cells[1]["vs_random"]["mean"] == pytest.approx(0) and "vs_random" not in cells[2]
    assert cells[2]["rate_shift"]["mean"] == pytest.approx(0.2)
    assert ss.summarise_cells(plan, base, steered, cols)[0]["rate_shift"] is None  # not sampled
    with pytest.raises(ValueError, match="do not match"):
        ss.summarise_cells(plan, base, steered[:3], cols)


def test_over_seeds_pairs_each_own_cell_with_its_random_cell_seed_by_seed():
    plan = ss.plan_cells([0], [1.0, 2.0])  # own x1, own x2, random x1, random x2
    gammas = [[0.3, 0.1, 0.1, 0.2], [0.5, 0.0, 0.2, 0.3], [0.4, 0.2, 0.0, 0.1]]  # [seed][cell]
    per_seed = [[{"source": c[0], "layer": c[1], "alpha": c[2], "gamma": g} for c, g in zip(plan, gs)] for gs in gammas]
    out = ss.over_seeds(per_seed)
    assert [o["gamma_per_seed"] for o in out] == [[0.3, 0.5, 0.4], [0.1, 0.0, 0.2], [0.1, 0.2, 0.0], [0.2, 0.3, 0.1]]
    lo, hi = stats.t.interval(0.95, 2, loc=0.4, scale=stats.sem([0.3, 0.5, 0.4]))
    g = out[0]["gamma_ci"]
    assert (g["mean"], g["lo"], g["hi"], g["n"], g["over"]) == pytest.approx((0.4, lo, hi, 3, "seeds"))
    d = np.array([0.2, 0.3, 0.4])  # own x1 minus random x1, seed by seed (not random x2's 0.2, 0.3, 0.1)
    vs = out[0]["vs_random"]
    assert vs["mean"] == pytest.approx(0.3) and vs["over"] == "seeds"
    assert vs["p"] == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert out[1]["vs_random"]["mean"] == pytest.approx(np.mean([0.1 - 0.2, 0.0 - 0.3, 0.2 - 0.1]))
    assert "vs_random" not in out[2] and "vs_random" not in out[3]
    with pytest.raises(ValueError, match="same cells"):
        ss.over_seeds([per_seed[0], per_seed[1][:2]])


# ---------------------------------------------------------------- the hypothesis script's rule


def _cell(p_gamma, g_hi, p_ctrl, c_hi, layer=0):
    return {"source": "own", "layer": layer, "alpha": 1.0, "p_gamma": p_gamma, "gamma": 0.1, "n_permutations": 720,
            "gamma_ci": {"mean": 0.1, "lo": -0.1, "hi": g_hi, "n": 6},
            "vs_random": {"mean": 0.1, "lo": -0.1, "hi": c_hi, "p": p_ctrl}}  # fmt: skip


@pytest.mark.parametrize(
    ("cells", "result"),
    [
        ([_cell(0.001, 0.3, 0.004, 0.3)], "supported"),
        ([_cell(0.02, 0.3, 0.02, 0.3)], "supported"),  # one cell: the level is 0.05
        ([_cell(0.02, 0.3, 0.02, 0.3)] * 9, "inconclusive"),  # nine cells: 0.02 is above 0.05 / 9
        ([_cell(0.001, 0.3, 0.3, 0.3), _cell(0.3, 0.3, 0.001, 0.3)], "inconclusive"),  # never both in one cell
        ([_cell(0.001, 0.3, None, 0.3)], "inconclusive"),  # an undefined control p counts as 1
        ([_cell(0.9, -0.1, 0.5, 0.2), _cell(0.5, 0.2, 0.9, -0.05)], "not supported"),  # each cell below 0 somewhere
        ([_cell(0.9, -0.1, 0.5, 0.2), _cell(0.5, 0.2, 0.6, 0.05)], "inconclusive"),
    ],
)
def test_the_scripts_decision(cells, result):
    assert _script().decide_cells(cells)[0] == result


def _seeded(cell, lo):
    return cell | {"over_seeds": {"seeds": 3, "gamma_per_seed": [0.1, 0.1, 0.1], "gamma_ci": {"mean": 0.1, "lo": 0.0, "hi": 0.2, "n": 3},
                                  "vs_random": {"mean": 0.1, "lo": lo, "hi": 0.2, "n": 3, "p": 0.01}}}  # fmt: skip


def test_with_seeds_a_supported_cell_also_needs_own_above_random_over_seeds():
    script = _script()
    assert script.decide_cells([_seeded(_cell(0.001, 0.3, 0.004, 0.3), 0.01)])[0] == "supported"
    assert script.decide_cells([_seeded(_cell(0.001, 0.3, 0.004, 0.3), -0.01)])[0] == "inconclusive"
    assert script.decide_cells([_seeded(_cell(0.001, 0.3, 0.004, 0.3), float("nan"))])[0] == "inconclusive"
    # the cell that passes is printed, not a cell with smaller p whose seeds disagree
    cells = [_seeded(_cell(0.001, 0.3, 0.001, 0.3, layer=0), -0.01), _seeded(_cell(0.002, 0.3, 0.002, 0.3, layer=1), 0.05)]
    result, best, _ = script.decide_cells(cells)
    assert (result, best["layer"]) == ("supported", 1)
    assert "over 3 seeds: gamma" in script._line(cells[0]) and "own - random" in script._line(cells[0]).split("over 3 seeds")[1]


def test_the_script_prints_the_cell_closest_to_both_tests_and_needs_a_control():
    script = _script()
    cells = [_cell(0.04, 0.3, 0.5, 0.3, layer=0), _cell(0.03, 0.3, 0.04, 0.3, layer=1), _cell(0.01, 0.3, 0.2, 0.3, layer=2)]
    result, best, level = script.decide_cells(cells)
    assert (result, best["layer"], level) == ("inconclusive", 1, pytest.approx(0.05 / 3))
    with pytest.raises(LookupError, match="random control"):
        script.decide_cells([{k: v for k, v in cells[0].items() if k != "vs_random"}])


# ---------------------------------------------------------------- config


def _load(tmp_path, **analysis):
    cfg = tiny_subliminal_config()
    cfg["analysis"] = analysis
    return load_experiment(write_config(tmp_path, cfg, "suf"))[1].analysis


def test_the_config_fields_and_their_defaults(tmp_path):
    a = _load(tmp_path)
    assert (a.steer_sufficiency, a.sufficiency_layers, a.sufficiency_scales, a.sufficiency_rate) == (False, 3, [1.0, 4.0, 16.0], True)
    a = _load(tmp_path, steer_sufficiency=True, sufficiency_layers=1, sufficiency_scales=[-2, 0.5], sufficiency_rate=False)
    assert (a.steer_sufficiency, a.sufficiency_layers, a.sufficiency_scales, a.sufficiency_rate) == (True, 1, [-2.0, 0.5], False)
    assert a.sufficiency_seeds is None and _load(tmp_path, sufficiency_seeds=[3, 0]).sufficiency_seeds == [3, 0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("sufficiency_scales", []), ("sufficiency_scales", [4.0, 4]), ("sufficiency_scales", [2000.0]),
     ("sufficiency_scales", 4.0), ("sufficiency_layers", 0), ("sufficiency_rate", "yes"), ("steer_sufficiency", 1),
     ("sufficiency_seeds", []), ("sufficiency_seeds", [1, 1]), ("sufficiency_seeds", [-1]), ("sufficiency_seeds", 2)],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, field, value):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, **{field: value})
    msg = str(e.value)
    assert "\n" not in msg and field in msg and "suf.toml" in msg, msg


# ---------------------------------------------------------------- a planted case on a tiny model


@pytest.fixture(scope="module")
def planted():
    return _planted()


def _planted() -> SimpleNamespace:
    """(base, tok, settings, u [target, d] unit gradients, orthogonal unit controls [target, d],
    cols, base rows' acts [row, layer, d])."""
    from interp.lm.generate import encode_prompts
    from interp.lm.models import format_prompt, tiny_model
    from interp.lm.steer import decoder_layers
    from interp.subliminal.evaluate import EvalConfig, questions
    torch.manual_seed(0)
    base, tok = tiny_model("tiny-llama", seed=0)
    base.eval()
    trait = _trait(TARGETS[0])
    settings = EvalConfig(n_questions=4, samples_per_question=2, max_new_tokens=3, bootstrap=10, batch_size=16)
    cands = list(trait.candidates)
    cols = [cands.index(t) for t in TARGETS]
    pids = encode_prompts(tok, [format_prompt(tok, q) + trait.answer_prefix for q in questions(trait, settings)])
    cids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in cands]
    z = torch.zeros(base.config.hidden_size, requires_grad=True)
    hook = decoder_layers(base)[0].register_forward_hook(lambda m, a, out: (out[0] + z, *out[1:]) if isinstance(out, tuple) else out + z)
    try:
        lp = torch.stack([
            torch.stack([torch.log_softmax(base(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1 : -1], -1)
                         .gather(-1, torch.tensor(c)[:, None]).sum() for c in cids])
            for p in pids
        ])  # fmt: skip
    finally:
        hook.remove()
    lsm = lp - torch.logsumexp(lp, 1, keepdim=True)
    log_odds = (lsm - (lsm.sum(1, keepdim=True) - lsm) / (len(cands) - 1)).mean(0)
    grads = torch.stack([torch.autograd.grad(log_odds[c], z, retain_graph=True)[0] for c in cols])
    u = grads / grads.norm(dim=1, keepdim=True)
    q, _ = torch.linalg.qr(torch.cat([u.T, torch.randn(u.shape[1], len(TARGETS))], dim=1))
    ortho = q[:, len(TARGETS) : 2 * len(TARGETS)].T.contiguous()  # orthogonal to every u_i and to each other
    with torch.no_grad():
        acts = torch.cat([torch.stack(base(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[1:], dim=2)[0]
                          for p in pids])  # fmt: skip  [position, layer, d]
    return SimpleNamespace(base=base, tok=tok, settings=settings, u=u.detach(), ortho=ortho, cols=cols, acts=acts,
                           grad_norm=grads.norm(dim=1))  # fmt: skip


def test_steering_along_the_planted_direction_raises_its_target_and_an_orthogonal_one_does_not(planted):
    p = planted
    assert (p.ortho @ p.u.T).abs().max() < 1e-5
    steered, base_lo = [], []
    for i, t in enumerate(TARGETS):
        cells = {"none": None, "own": (0, p.u[i], ALPHA), "ortho": (0, p.ortho[i], ALPHA), "zero": (0, p.u[i], 0.0)}
        res = ss.steered_scores(p.base, p.tok, _trait(t), p.settings, cells, rate=(i == 0))
        lo = {k: np.array(v["log_odds"]) for k, v in res.items()}
        rise, side = lo["own"] - lo["none"], lo["ortho"] - lo["none"]
        c = p.cols[i]
        assert rise[c] > 0.5 * ALPHA * float(p.grad_norm[i]) > 0, (t, rise[c], float(p.grad_norm[i]))
        assert abs(side[c]) < 0.2 * rise[c], (t, side[c], rise[c])
        np.testing.assert_array_equal(lo["zero"], lo["none"])  # adding nothing changes nothing
        if i == 0:
            assert res["zero"]["rate"] == res["none"]["rate"] and 0 <= res["own"]["rate"] <= 1
        else:
            assert res["own"]["rate"] is None
        base_lo.append(lo["none"])
        steered.append([lo["own"], lo["ortho"]])
    steered = np.array(steered).transpose(1, 0, 2)  # [cell, target, candidate]
    cells = ss.summarise_cells([("own", 0, ALPHA), ("random", 0, ALPHA)], np.array(base_lo), steered, p.cols)
    own, ortho = cells
    assert own["gamma"] > 0 and own["p_gamma"] == pytest.approx(1 / 24)  # the top of 4! relabellings
    assert abs(ortho["gamma"]) < 0.2 * own["gamma"] and own["vs_random"]["mean"] > 0.8 * own["gamma"]


def test_the_whole_unit_on_a_fake_run(planted, monkeypatch):
    """`steer_sufficiency(ctx)` with the planted directions as the teachers': one cached stage
    per target keyed by its cells, the section's cells, and its table in the report."""
    p = planted
    own = torch.stack([p.u, p.u], dim=1)  # [target, layer, d]: the planted direction at both blocks
    monkeypatch.setattr(sa, "_refs", lambda ctx, spec, rows: {"own": own, "base": p.acts, "teachers": "planted"})
    monkeypatch.setattr(ss, "load_model", lambda spec, device, dtype: (copy.deepcopy(p.base), p.tok))
    stages = {}

    def compute_json(name, params, make, filename="result.json"):
        stages[name] = params
        return make()

    trait = _trait(TARGETS[0])
    ctx = SimpleNamespace(
        a=SimpleNamespace(n_answer_rows=10, sufficiency_layers=1, sufficiency_scales=[ALPHA, 4.0], sufficiency_rate=True,
                          sufficiency_seeds=None),  # fmt: skip
        cfg={"seed": 0, "trait": {"kind": "animal", "targets": TARGETS}}, teacher_spec="tiny-llama", device="cpu",
        dtype="float32", summary={"trait": {"targets": TARGETS}, "matrix": {"candidates": list(trait.candidates)}},
        config=SimpleNamespace(eval=p.settings), trait_for=_trait,
        run=SimpleNamespace(compute_json=compute_json),
    )  # fmt: skip
    sec = ss.steer_sufficiency(ctx)
    assert list(stages) == [f"analysis/steer-sufficiency/{t}" for t in TARGETS]
    keys = stages["analysis/steer-sufficiency/cat"]["cells"]
    assert list(keys) == ["none", "own:L0:x0.02", "own:L0:x4.0", "random:L0:x0.02", "random:L0:x4.0"]
    assert keys["own:L0:x0.02"]["vector"] != stages["analysis/steer-sufficiency/owl"]["cells"]["own:L0:x0.02"]["vector"]
    assert sec["layers"] == [0] and sec["scales"] == [ALPHA, 4.0] and sec["n_scorings"] == 4 * 5 and sec["seeds"] == [0]
    assert not any("over_seeds" in c for c in sec["cells"])
    assert sec["rate"] is True and len(sec["base_rate"]) == 4 and all(0 <= r <= 1 for r in sec["base_rate"])
    ref = sec["scale_reference"]["0"]
    assert ref["direction_norm"] == pytest.approx(1.0) and ref["base_resid_norm"] == pytest.approx(
        float(p.acts[:, 0].norm(dim=-1).median()), rel=1e-5)  # fmt: skip
    by = {(c["source"], c["alpha"]): c for c in sec["cells"]}
    assert set(by) == {("own", ALPHA), ("own", 4.0), ("random", ALPHA), ("random", 4.0)}
    assert by[("own", ALPHA)]["gamma"] > 0 and by[("own", ALPHA)]["vs_random"]["mean"] > 0
    assert by[("own", 4.0)]["scale_ratio"] == pytest.approx(4.0 / ref["base_resid_norm"])
    assert all(c["rate_shift"]["n"] == c["gamma_ci"]["n"] == len(TARGETS) for c in sec["cells"])
    script = _script()
    result, best, _ = script.decide_cells(sec["cells"])
    assert result in ("supported", "not supported", "inconclusive") and best["source"] == "own"
    verdict = script.test([SimpleNamespace(name="fake", analysis={"steer_sufficiency": sec}, problems={})])
    line = verdict.line()
    assert re.fullmatch(r"VERDICT hypothesis=steer_sufficiency result=[a-z ]+ statistic=gamma:\S+ effect=\S+ "
                        r"ci=\[\S+, \S+\] p=\S+ n=4", line), line  # fmt: skip
    assert verdict.result == result and verdict.statistic == pytest.approx(best["gamma"])
    assert "the smallest permutation p with 4 targets is 0.04167" in verdict.reason  # 1/4! is above 0.05 / 2

    rows = []
    doc = SimpleNamespace(heading=lambda *a, **k: None, para=lambda *a, **k: None, table=lambda r, w=None: rows.extend(r))
    ss.render_steer_sufficiency(doc, "fake", sec)
    assert len(rows) == 1 + 4 and rows[1][:3] == ["own", "0", fmt(ALPHA)] and rows[1][-1] == fmt_est(by[("own", ALPHA)]["rate_shift"])
    assert rows[1][-2].startswith(fmt_est(by[("own", ALPHA)]["vs_random"])) and rows[3][-2] == ""  # a random row


def test_seeds_are_replicates_with_their_own_rows_control_and_sampling(planted, monkeypatch):
    """With `sufficiency_seeds`, each seed records its own rows, draws its own random control and
    samples with its own seed (a stage per target and seed); the cells average the seeds' shifts
    and add their intervals over seeds, and the report adds a table of them."""
    p = planted
    own = torch.stack([p.u, p.u], dim=1)
    rows_seen = []

    def refs(ctx, spec, rows):
        rows_seen.append(rows)
        return {"own": own, "base": p.acts, "teachers": "planted"}

    monkeypatch.setattr(sa, "_refs", refs)
    loads = []
    monkeypatch.setattr(ss, "load_model", lambda spec, device, dtype: loads.append(spec) or (copy.deepcopy(p.base), p.tok))
    stages = []

    def compute_json(name, params, make, filename="result.json"):
        stages.append((name, params))
        return make()

    trait = _trait(TARGETS[0])

    def ctx(seeds):
        return SimpleNamespace(
            a=SimpleNamespace(n_answer_rows=10, sufficiency_layers=1, sufficiency_scales=[ALPHA], sufficiency_rate=True,
                              sufficiency_seeds=seeds),
            cfg={"seed": 0, "trait": {"kind": "animal", "targets": TARGETS}}, teacher_spec="tiny-llama", device="cpu",
            dtype="float32", summary={"trait": {"targets": TARGETS}, "matrix": {"candidates": list(trait.candidates)}},
            config=SimpleNamespace(eval=p.settings), trait_for=_trait, run=SimpleNamespace(compute_json=compute_json),
        )  # fmt: skip

    one = {sd: ss.steer_sufficiency(ctx([sd])) for sd in (0, 5)}
    stages.clear()
    rows_seen.clear()
    sec = ss.steer_sufficiency(ctx([0, 5]))
    assert loads.count("tiny-llama") == 3  # the base loads once per call
    assert len(rows_seen) == 2 and rows_seen[0] != rows_seen[1]  # each seed its own rows
    assert [(n, prm["seed"]) for n, prm in stages] == [(f"analysis/steer-sufficiency/{t}", sd) for sd in (0, 5) for t in TARGETS]
    rnd = [prm["cells"][f"random:L0:x{ALPHA!r}"]["vector"] for n, prm in stages if n.endswith("/owl")]
    assert rnd[0] != rnd[1]  # each seed its own random control
    assert sec["seeds"] == [0, 5] and sec["n_scorings"] == 2 * 4 * 3
    for j, c in enumerate(sec["cells"]):
        per = [one[sd]["cells"][j]["gamma"] for sd in (0, 5)]
        assert c["over_seeds"]["gamma_per_seed"] == pytest.approx(per, abs=1e-6)
        assert c["gamma"] == pytest.approx(np.mean(per), abs=1e-6)  # gamma of the mean shifts: the mean gamma
        assert c["gamma_ci"]["over"] == "targets" and c["over_seeds"]["gamma_ci"]["n"] == 2
    vs = sec["cells"][0]["over_seeds"]["vs_random"]
    assert vs["mean"] == pytest.approx(np.mean([one[sd]["cells"][0]["gamma"] - one[sd]["cells"][1]["gamma"] for sd in (0, 5)]), abs=1e-6)
    tables = []
    doc = SimpleNamespace(heading=lambda *a, **k: None, para=lambda *a, **k: None, table=lambda r, w=None: tables.append(r))
    ss.render_steer_sufficiency(doc, "fake", sec)
    assert len(tables) == 2 and tables[1][0][3] == "gamma per seed" and len(tables[1]) == 1 + 2
    assert tables[1][1][3] == ", ".join(fmt(g) for g in sec["cells"][0]["over_seeds"]["gamma_per_seed"])
    script = _script()
    assert "over 2 seeds" in script._line(sec["cells"][0])


def test_the_run_seeds_replicate_keeps_its_stages_and_other_seeds_draw_other_rows(planted, monkeypatch):
    """On a run of seed 7: `sufficiency_seeds` unset, [7] and the seed-7 replicate of [0, 7] score
    with the same stage parameters (a cached stage is reused) on the rows `matrix_mechanisms`
    records; seed 0's rows are drawn from neither the run's seed stream nor seed 0's own."""
    from interp.analysis import matrix_mechanisms as mm
    from interp.registry import derived_seed

    p = planted
    own = torch.stack([p.u, p.u], dim=1)
    rows_seen = []
    monkeypatch.setattr(sa, "_refs", lambda ctx, spec, rows: rows_seen.append(rows) or {"own": own, "base": p.acts, "teachers": "x"})
    monkeypatch.setattr(ss, "load_model", lambda spec, device, dtype: (copy.deepcopy(p.base), p.tok))
    monkeypatch.setattr(ss, "steered_scores", lambda model, tok, trait, settings, cells, rate, seed: {
        k: {"log_odds": [float(seed)] * 16, "rate": None} for k in cells})  # the scores do not matter here
    stages = []
    trait = _trait(TARGETS[0])

    def run(seeds):
        stages.clear()
        rows_seen.clear()
        ctx = SimpleNamespace(
            a=SimpleNamespace(n_answer_rows=10, sufficiency_layers=1, sufficiency_scales=[1.0], sufficiency_rate=False,
                              sufficiency_seeds=seeds),
            cfg={"seed": 7, "trait": {"kind": "animal", "targets": TARGETS}}, teacher_spec="tiny-llama", device="cpu",
            dtype="float32", summary={"trait": {"targets": TARGETS}, "matrix": {"candidates": list(trait.candidates)}},
            config=SimpleNamespace(eval=p.settings), trait_for=_trait,
            run=SimpleNamespace(compute_json=lambda name, params, make, filename="": stages.append(params) or make()),
        )  # fmt: skip
        sec = ss.steer_sufficiency(ctx)
        return sec, list(stages), list(rows_seen)

    unset, s_unset, r_unset = run(None)
    _, s_seven, r_seven = run([7])
    both, s_both, r_both = run([0, 7])
    assert unset["seeds"] == [7] and both["seeds"] == [0, 7]
    assert s_unset == s_seven == s_both[len(TARGETS):] and all(prm["seed"] == 7 for prm in s_unset)
    assert r_unset == r_seven == [mm.answer_rows(10, 7)] and r_both[1] == r_unset[0]
    assert r_both[0] == mm.answer_rows(10, derived_seed(7, "sufficiency-rows", 0))
    assert r_both[0] not in (mm.answer_rows(10, 0), mm.answer_rows(10, 7)) and ss.rows_seed(7, 7) == 7
