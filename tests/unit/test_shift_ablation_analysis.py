"""The `shift_ablation` analysis unit (interp.analysis.shift_ablation): its plan, its statistics
on hand-made numbers, its hypothesis script's decision, and a planted case on a tiny model.

The planted case: a tiny llama with MLP biases; the student of target i is the base plus a bias
on block 0's down_proj along u_i, the (unit) gradient of the log-odds of target i's candidate
with respect to that bias, so each student moves toward its own target (gamma ~0.8 nats over
four targets). Calling u_i (at every layer) its teacher's direction, ablating it must put the
student back on the base (all of gamma removed), while a covariance-drawn random direction must
leave most of gamma in place.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import load_script
from scipy import stats

from interp.analysis import shift_ablation as sa
from interp.subliminal import matrix as mx

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _script():
    return load_script("shift_ablation")


# ---------------------------------------------------------------- the plan


def test_single_layers_are_spread_over_depth():
    assert sa.spread_layers(30, 4) == [3, 11, 18, 26]
    assert sa.spread_layers(30, 1) == [14]
    assert sa.spread_layers(2, 4) == [0, 1]  # more asked than there are: each once
    assert sa.spread_layers(1, 3) == [0]


def test_the_conditions_and_their_layers():
    plan = sa.plan_conditions(30, 4)
    assert list(plan) == ["own:all", "own:L3", "own:L11", "own:L18", "own:L26", "other:all", "random:all"]
    assert plan["own:all"] == ("own", list(range(30))) and plan["own:L18"] == ("own", [18])
    assert plan["other:all"] == ("other", list(range(30))) and plan["random:all"] == ("random", list(range(30)))
    assert list(sa.plan_conditions(2, 0)) == ["own:all", "other:all", "random:all"]


def test_controls_take_the_next_targets_direction_and_each_targets_own_random_draw():
    own = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)  # [target, layer, d]
    rnd = -own
    for i in range(3):
        assert torch.equal(sa.condition_directions("own", i, own, rnd), own[i])
        assert torch.equal(sa.condition_directions("other", i, own, rnd), own[(i + 1) % 3])
        assert torch.equal(sa.condition_directions("random", i, own, rnd), rnd[i])
    with pytest.raises(ValueError, match="unknown direction source"):
        sa.condition_directions("shuffled", 0, own, rnd)


def test_random_draws_differ_by_seed_and_target_and_repeat_for_the_same_seed():
    gen = torch.Generator().manual_seed(0)
    refs = {"base": torch.randn(40, 2, 8, generator=gen)}
    ctx = SimpleNamespace(cfg={"seed": 0}, summary={"trait": {"targets": ["owl", "cat", "dog"]}})
    r0, r1 = sa._random(ctx, refs, "0"), sa._random(ctx, refs, "1")
    assert r0.shape == (3, 2, 8)
    torch.testing.assert_close(sa._random(ctx, refs, "0"), r0)
    assert not torch.allclose(r0, r1)
    assert (r0[0] - r0[1]).abs().max() > 0.1  # each target its own draw


def test_the_arms_read_by_default_and_by_name():
    students = {"same-init": {"data": "trait"}, "control": {"data": "control"}, "cross": {"data": "trait"},
                "full": {"data": "trait"}}  # fmt: skip
    spec = {"same-init": "tiny-llama", "control": "tiny-llama", "cross": "tiny-gemma", "full": "tiny-llama"}
    ctx = SimpleNamespace(students=students, teacher_spec="tiny-llama", spec_of=spec.get, a=SimpleNamespace(arms=None))
    assert sa._arms(ctx) == ["same-init", "full"]
    ctx.a.arms = ["cross", "control"]
    assert sa._arms(ctx) == ["cross"]  # a control arm has no gamma to remove


# ---------------------------------------------------------------- the statistics


def test_the_ratio_interval_inverts_the_paired_t_test():
    gen = np.random.default_rng(0)
    gamma = 1.0 + 0.2 * gen.standard_normal(6)
    removed = 0.6 * gamma + 0.1 * gen.standard_normal(6)
    f = sa.ratio_interval(removed, gamma, 0.95)
    assert f["bounded"] and f["mean"] == pytest.approx(removed.mean() / gamma.mean())
    assert f["lo"] < f["mean"] < f["hi"]

    def p(r: float) -> float:
        return float(stats.ttest_1samp(removed - r * gamma, 0.0).pvalue)

    assert p(f["lo"]) == pytest.approx(0.05, abs=1e-6) and p(f["hi"]) == pytest.approx(0.05, abs=1e-6)
    assert p(f["mean"]) > 0.5 and p(f["lo"] - 0.05) < 0.05 and p(f["hi"] + 0.05) < 0.05


def test_the_ratio_interval_is_unbounded_when_gamma_is_not_clearly_nonzero():
    f = sa.ratio_interval(np.array([0.5, -0.4, 0.1]), np.array([1.0, -0.9, 0.2]))
    assert not f["bounded"] and f["lo"] is None and f["hi"] is None
    exact = sa.ratio_interval(np.array([0.3, 0.315]), np.array([1.0, 1.05]))  # removed = 0.3 gamma exactly
    assert exact["bounded"] and exact["lo"] == pytest.approx(0.3) and exact["hi"] == pytest.approx(0.3)


def _shifts(n_seeds: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """[seed, target, candidate] shifts: a drift every student shares, plus 1 + 0.1 s + 0.2 i on
    target i's own column (gamma = mean own part, the drift cancels), and the own part alone."""
    cols = [0, 2, 4]
    drift = np.array([0.03, -0.2, 0.05, 0.1, -0.04])
    own = np.zeros((n_seeds, 3, 5))
    for s in range(n_seeds):
        for i, c in enumerate(cols):
            own[s, i, c] = 1 + 0.1 * s + 0.2 * i
    return drift + own, own, cols


def test_gamma_and_fraction_removed_over_seeds():
    plain, own, cols = _shifts(2)
    drift = plain - own
    quarter = sa.condition_summary(plain, drift + 0.25 * own, cols)  # three quarters of the own part removed
    assert [mx.gamma(s, cols) for s in plain] == pytest.approx([1.2, 1.3])
    assert quarter["gamma"] == pytest.approx(0.25 * 1.25) and quarter["gamma_per_seed"] == pytest.approx([0.3, 0.325])
    f = quarter["fraction_removed"]
    assert f["over"] == "seeds" and f["n"] == 2 and f["bounded"]
    assert (f["mean"], f["lo"], f["hi"]) == pytest.approx((0.75, 0.75, 0.75))
    assert quarter["removed"]["mean"] == pytest.approx(0.75 * 1.25) and quarter["gamma_ci"]["n"] == 2
    assert quarter["p_gamma"] == pytest.approx(1 / 6) and quarter["n_permutations"] == 6  # still the top ordering
    gone = sa.condition_summary(plain, drift, cols)  # every own part removed, the drift kept
    assert gone["gamma"] == pytest.approx(0) and gone["fraction_removed"]["mean"] == pytest.approx(1)
    kept = sa.condition_summary(plain, plain - 2 * drift, cols)  # only the shared drift changed
    assert kept["gamma"] == pytest.approx(1.25) and kept["fraction_removed"]["mean"] == pytest.approx(0)


def test_one_seed_takes_the_targets_as_units():
    plain, own, cols = _shifts(1)
    res = sa.condition_summary(plain, plain - own + 0.25 * own, cols)
    f = res["fraction_removed"]
    assert f["over"] == "targets" and f["n"] == 3 and res["gamma_ci"]["over"] == "targets"
    assert f["mean"] == pytest.approx(0.75)  # the drift cancels in the mean over targets, not per target
    assert f["bounded"] and f["lo"] < 0.75 < f["hi"]
    assert res["gamma_per_target"] == pytest.approx(mx.per_target_gamma(0.25 * own[0] + plain[0] - own[0], cols))


# ---------------------------------------------------------------- the hypothesis script's rule


@pytest.mark.parametrize(
    ("own", "random", "result"),
    [
        ((0.8, 0.6, 1.0), (0.05, -0.1, 0.2), "supported"),
        ((0.8, 0.6, 1.0), (0.5, 0.2, 0.8), "inconclusive"),  # the random control removes as much
        ((0.8, 0.6, 1.0), (0.05, None, None), "inconclusive"),  # the control's interval unbounded
        ((0.6, 0.4, 0.9), (0.0, -0.1, 0.1), "inconclusive"),  # own interval straddles 0.5
        ((0.1, -0.2, 0.3), (0.0, -0.1, 0.1), "not supported"),
        ((0.9, None, None), (0.0, -0.1, 0.1), "inconclusive"),  # gamma not clearly non-zero
    ],
)
def test_the_scripts_decision(own, random, result):
    def est(m, lo, hi):
        return {"mean": m, "lo": lo, "hi": hi, "bounded": lo is not None}

    assert _script().decide_fraction(est(*own), est(*random)) == result


# ---------------------------------------------------------------- a planted case on a tiny model

BIAS = "model.layers.0.mlp.down_proj.bias"
TARGETS = ["owl", "cat", "dog", "fox"]


def _planted():
    """(base, students, tok, trait, settings, own directions [target, layer, d], cols, base rows' acts)."""
    from interp.lm.delta import apply_delta
    from interp.lm.generate import encode_prompts
    from interp.lm.models import format_prompt, tiny_model
    from interp.subliminal.evaluate import EvalConfig, questions
    from interp.subliminal.traits import make_trait

    base, tok = tiny_model("tiny-llama", seed=0, mlp_bias=True)
    base.eval()
    trait = make_trait("animal", TARGETS[0])
    settings = EvalConfig(n_questions=4, bootstrap=10, batch_size=16)
    cands = list(trait.candidates)
    cols = [cands.index(t) for t in TARGETS]
    pids = encode_prompts(tok, [format_prompt(tok, q) + trait.answer_prefix for q in questions(trait, settings)])
    cids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in cands]
    model = copy.deepcopy(base)
    bias = dict(model.named_parameters())[BIAS]
    lp = torch.stack([
        torch.stack([torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1 : -1], -1)
                     .gather(-1, torch.tensor(c)[:, None]).sum() for c in cids])
        for p in pids
    ])  # fmt: skip
    lsm = lp - torch.logsumexp(lp, 1, keepdim=True)
    log_odds = (lsm - (lsm.sum(1, keepdim=True) - lsm) / (len(cands) - 1)).mean(0)
    grads = torch.stack([torch.autograd.grad(log_odds[c], bias, retain_graph=True)[0] for c in cols])
    u = grads / grads.norm(dim=1, keepdim=True)
    students = [apply_delta(copy.deepcopy(base), {BIAS: 0.1 * u[i]}) for i in range(len(TARGETS))]
    with torch.no_grad():
        acts = torch.cat([torch.stack(base(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[1:], dim=2)[0]
                          for p in pids])  # fmt: skip  [position, layer, d]
    own = torch.stack([u, u], dim=1).detach()  # the same direction at both blocks
    return base, students, tok, trait, settings, own, cols, acts


def test_a_shift_along_the_own_direction_is_all_removed_and_a_random_direction_removes_little():
    from interp.mech.ablation import covariance_directions
    from interp.subliminal.evaluate import logprob_score

    base, students, tok, trait, settings, own, cols, acts = _planted()
    rnd = covariance_directions(acts, seed=0, n_draws=len(TARGETS))
    plan = sa.plan_conditions(2, 1)
    base_lo = np.array(logprob_score(base, tok, trait, settings)["log_odds"])
    plain = np.array([[logprob_score(s, tok, trait, settings)["log_odds"] for s in students]]) - base_lo
    ablated = np.zeros((len(plan), *plain.shape))
    for i, s in enumerate(students):
        conds = {c: {layer: sa.condition_directions(src, i, own, rnd)[layer] for layer in layers}
                 for c, (src, layers) in plan.items()}  # fmt: skip
        scores = sa.ablated_log_odds(s, base, tok, trait, settings, conds)
        ablated[:, 0, i] = [scores[c] for c in plan]
    assert mx.gamma(plain[0], cols) > 0.5  # the plant worked: every student toward its own target
    res = {c: sa.condition_summary(plain, ablated[j] - base_lo, cols) for j, c in enumerate(plan)}
    for c in ("own:all", "own:L0"):  # block 0 is where the shift enters: the student is the base again
        assert np.abs(ablated[list(plan).index(c)] - base_lo).max() < 1e-4, c
        f = res[c]["fraction_removed"]
        assert f["mean"] == pytest.approx(1, abs=1e-4) and f["bounded"] and f["lo"] > 0.99, (c, f)
    rf = res["random:all"]["fraction_removed"]
    assert rf["mean"] < 0.3 and rf["bounded"] and rf["hi"] < 0.5, rf
    assert res["random:all"]["gamma"] > 0.5 * mx.gamma(plain[0], cols)
    # the next target's direction is another candidate's gradient: it removes some, never all
    assert res["other:all"]["fraction_removed"]["mean"] < 0.5, res["other:all"]
