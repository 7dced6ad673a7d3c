"""Invariants of the mechanism analyses: cosines, principal angles, the gradient theorem's
inner product (checked against finite differences on a tiny Llama), directions and probes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interp.lm.delta import apply_delta, parse_param_name
from interp.lm.finetune import Example, FinetuneConfig, tokenize_examples
from interp.lm.loss import Objective
from interp.lm.models import format_prompt, tiny_model
from interp.mech.alignment import (
    aggregate_over_seeds,
    delta_cosines,
    delta_subspace_angles,
    principal_angles,
    random_subspace_baseline,
)
from interp.mech.directions import (
    best_layer,
    direction_cosine_ci,
    layer_cosines,
    mean_difference,
    projections,
)
from interp.mech.gradient import descent_alignment, iter_imitation_gradients
from interp.mech.probes import apply_probes, train_probes

torch.set_num_threads(1)


@torch.no_grad()
def imitation_loss(model, tok, examples: list[Example], end: str) -> float:
    """The reference: mean completion-token cross-entropy over all `examples`, one batch."""
    objective = Objective.build(tok, FinetuneConfig(), None, next(model.parameters()).device)
    rows = tokenize_examples(tok, examples, end, 500)
    return float(objective.loss(model, rows)) / max(sum(len(r["s_sel"]) for r in rows), 1)


def first_order_loss_change(grad: dict[str, torch.Tensor], d_t: dict[str, torch.Tensor], eps: float) -> float:
    """<g, eps dT>: the first-order change of the loss when moving eps along dT."""
    return eps * sum(float((grad[n].double() * d_t[n].double()).sum()) for n in grad.keys() & d_t.keys())


MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _delta(seed: int = 0, n_layers: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for layer in range(n_layers):
        for m in MODULES:
            block = "self_attn" if m in MODULES[:4] else "mlp"
            out[f"model.layers.{layer}.{block}.{m}.weight"] = torch.randn(6, 5, generator=gen)
    return out


def _all_cosines(res: dict) -> list[float]:
    return [
        *res["per_tensor"].values(),
        *res["per_layer"].values(),
        *res["per_module"].values(),
        res["overall"],
    ]


# --- alignment ---------------------------------------------------------------------------


def test_parse_param_name_llama_gemma_and_non_layer():
    assert parse_param_name("model.layers.3.mlp.up_proj.weight") == (3, "up_proj")
    assert parse_param_name("model.layers.12.self_attn.o_proj.weight") == (12, "o_proj")
    assert parse_param_name("model.layers.0.self_attn.q_proj.base_layer.weight") == (0, "q_proj")
    assert parse_param_name("model.embed_tokens.weight") == (None, "embed_tokens")


def test_cosine_with_itself_is_one_and_with_negation_minus_one():
    d = _delta()
    same = delta_cosines(d, d)
    assert len(same["per_layer"]) == 2 and len(same["per_module"]) == 7
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in _all_cosines(same))
    neg = delta_cosines(d, {k: -v for k, v in d.items()})
    assert all(c == pytest.approx(-1.0, abs=1e-9) for c in _all_cosines(neg))
    json.dumps(same)  # JSON-able


def test_scaled_delta_has_cosine_one_and_norm_ratio_three():
    d = _delta()
    res = delta_cosines({k: 3 * v for k, v in d.items()}, d)
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in _all_cosines(res))
    assert res["norms"]["ratio"] == pytest.approx(3.0)
    for layer in res["norms"]["per_layer"].values():
        assert layer["student"] / layer["teacher"] == pytest.approx(3.0)


def test_unrelated_deltas_are_near_orthogonal_and_groups_are_not_averages():
    a, b = _delta(0), _delta(1)
    res = delta_cosines(a, b)
    assert abs(res["overall"]) < 0.3
    # Overall = concatenation, checked against a direct computation.
    va = torch.cat([a[k].flatten() for k in sorted(a)])
    vb = torch.cat([b[k].flatten() for k in sorted(b)])
    assert res["overall"] == pytest.approx(float(torch.cosine_similarity(va, vb, dim=0)), abs=1e-6)


def test_shape_mismatch_raises_and_zero_delta_is_nan_with_reason():
    d = _delta()
    bad = dict(d)
    name = "model.layers.0.mlp.up_proj.weight"
    bad[name] = torch.zeros(5, 6)
    with pytest.raises(ValueError, match="up_proj"):
        delta_cosines(d, bad)
    zero = {k: torch.zeros_like(v) for k, v in d.items()}
    res = delta_cosines(zero, d)
    assert math.isnan(res["overall"]) and math.isnan(res["per_tensor"][name])
    assert any("zero norm" in n for n in res["notes"])


def test_principal_angles_self_orthogonal_and_basis_invariance():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    assert torch.allclose(principal_angles(a, a), torch.zeros(4, dtype=torch.float64), atol=1e-7)
    eye = torch.eye(10, dtype=torch.float64)
    ang = principal_angles(eye[:, :3], eye[:, 3:7])
    assert torch.allclose(ang, torch.full((3,), math.pi / 2, dtype=torch.float64), atol=1e-7)
    b = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    mix = torch.randn(4, 4, generator=gen, dtype=torch.float64) + 4 * torch.eye(4)
    assert torch.allclose(principal_angles(a, b), principal_angles(a @ mix, b), atol=1e-7)
    ang = principal_angles(a, b)
    assert (ang[1:] >= ang[:-1]).all() and ang.min() >= 0 and ang.max() <= math.pi / 2
    # One shared direction: the smallest angle is 0, the rest are not.
    c = torch.cat([a[:, :1], torch.randn(20, 2, generator=gen, dtype=torch.float64)], 1)
    ang = principal_angles(a, c)
    assert ang[0] < 1e-7 and ang[1] > 0.05


def test_delta_subspace_angles_self_zero_and_baseline_large():
    gen = torch.Generator().manual_seed(0)
    low = {  # rank-2 deltas, like a LoRA update
        f"model.layers.{i}.mlp.down_proj.weight": torch.randn(30, 2, generator=gen)
        @ torch.randn(2, 20, generator=gen)
        for i in range(2)
    }
    for side in ("out", "in"):
        res = delta_subspace_angles(low, low, rank=2, side=side)
        summary = res.to_dict()["per_module"]["down_proj"]
        assert summary["mean_angle"] < 1e-5 and summary["n_tensors"] == 2
        assert summary["baseline"]["mean_angle"] > 0.8  # random 2-planes in R^30 or R^20
        json.dumps(res.to_dict())
    other = {k: torch.randn(30, 2, generator=gen) @ torch.randn(2, 20, generator=gen) for k in low}
    res = delta_subspace_angles(low, other, rank=2).to_dict()["per_module"]["down_proj"]
    assert res["mean_angle"] > 0.5
    assert random_subspace_baseline(30, 2) == random_subspace_baseline(30, 2)  # fixed seed


def test_aggregate_over_seeds():
    est = aggregate_over_seeds([0.1, 0.2, 0.3, float("nan")])
    assert est.n == 3 and est.lo < 0.2 < est.hi and est.mean == pytest.approx(0.2)


# --- gradient theorem ------------------------------------------------------------------------


def _teacher_examples(tok, n=4):
    return [Example(format_prompt(tok, f"numbers {i}"), f"{i}3, {i}7, 1{i}") for i in range(n)]


TARGETS = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.1.self_attn.v_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
]


def test_gradient_inner_product_matches_finite_difference():
    model, tok = tiny_model("tiny-llama", seed=0)
    model = model.double()
    examples = _teacher_examples(tok)
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(1)
    d_t = {n: torch.randn(params[n].shape, generator=gen, dtype=torch.float64) for n in TARGETS}
    before = {n: p.detach().clone() for n, p in params.items()}
    flags = {n: p.requires_grad for n, p in params.items()}
    (grad,) = list(
        iter_imitation_gradients(model, tok, examples, TARGETS, batch_size=8, end=tok.eos_token)
    )
    assert set(grad) == set(TARGETS)
    # The model is left unchanged: weights and requires_grad flags.
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    eps = 1e-4
    up = imitation_loss(apply_delta(model, d_t, scale=eps), tok, examples, tok.eos_token)
    down = imitation_loss(apply_delta(model, d_t, scale=-2 * eps), tok, examples, tok.eos_token)
    apply_delta(model, d_t, scale=eps)
    fd = (up - down) / (2 * eps)
    predicted = first_order_loss_change(grad, d_t, 1.0)
    assert abs(predicted) > 1e-3  # a non-trivial check
    assert fd == pytest.approx(predicted, rel=1e-3)
    res = descent_alignment([grad], d_t, n_boot=100)
    assert res["overall"]["inner"][0] == pytest.approx(-predicted, rel=1e-9)


def test_exact_descent_step_has_cosine_one_and_batches_are_per_batch():
    model, tok = tiny_model("tiny-llama", seed=0)
    grads = list(
        iter_imitation_gradients(
            model, tok, _teacher_examples(tok, n=4), TARGETS, batch_size=2, end=tok.eos_token
        )
    )
    assert len(grads) == 2
    assert not torch.allclose(grads[0][TARGETS[0]], grads[1][TARGETS[0]])
    d_t = {n: -g for n, g in grads[0].items()}  # one exact descent step
    res = descent_alignment(grads, d_t, n_boot=100)
    assert res["overall"]["cos"][0] == pytest.approx(1.0, abs=1e-6)
    for k in ("attention", "mlp", "layer.0", "layer.1"):
        assert res["groups"][k]["cos"][0] == pytest.approx(1.0, abs=1e-6)
    assert res["overall"]["inner"][0] > 0 and 0.5 <= res["overall"]["frac_positive"] <= 1.0
    anti = descent_alignment(grads[:1], grads[0], n_boot=100)  # ascent direction: -1
    assert anti["overall"]["cos"][0] == pytest.approx(-1.0, abs=1e-6)
    assert anti["overall"]["frac_positive"] == 0.0
    json.dumps(res)


def test_custom_groups_and_pooled_cosine():
    g1 = {"a.weight": torch.tensor([[1.0, 0.0]]), "b.weight": torch.tensor([[0.0, 1.0]])}
    g2 = {"a.weight": torch.tensor([[1.0, 0.0]]), "b.weight": torch.tensor([[0.0, -1.0]])}
    d_t = {"a.weight": torch.tensor([[-1.0, 0.0]]), "b.weight": torch.tensor([[0.0, 0.0]])}
    res = descent_alignment([g1, g2], d_t, groups={"a": lambda n: n.startswith("a")}, n_boot=50)
    assert res["overall"]["cos"] == pytest.approx([1 / math.sqrt(2)] * 2)
    assert res["overall"]["pooled_cos"] == pytest.approx(1.0)  # b cancels in the mean gradient
    assert res["groups"]["a"]["cos"] == pytest.approx([1.0, 1.0])
    assert set(res["groups"]) == {"a"}


# --- directions ------------------------------------------------------------------------------


def _planted(n=200, n_layers=3, d=16, layer=1, strength=3.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    neutral = torch.randn(n, n_layers, d, generator=gen)
    trait = torch.randn(n, n_layers, d, generator=gen)
    trait[:, layer] += strength * direction
    return trait, neutral, direction


def test_mean_difference_recovers_planted_direction_and_best_layer():
    trait, neutral, direction = _planted()
    diff = mean_difference(trait, neutral)
    assert float(torch.cosine_similarity(diff[1], direction, dim=0)) > 0.95
    layer, scores = best_layer(trait, neutral)
    assert layer == 1 and scores[1] > 2 * scores[0].abs()


def test_projections_are_linear_and_layer_cosines():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, 8, generator=gen), torch.randn(5, 3, 8, generator=gen)
    v = torch.randn(3, 8, generator=gen)
    lhs = projections(2 * x - 0.5 * y, v)
    assert torch.allclose(lhs, 2 * projections(x, v) - 0.5 * projections(y, v), atol=1e-5)
    assert torch.allclose(projections(x, 7 * v), projections(x, v), atol=1e-5)  # unit direction
    cos = layer_cosines(v, -3 * v)
    assert torch.allclose(cos, -torch.ones(3, dtype=cos.dtype))
    zero = layer_cosines(torch.zeros(3, 8), v)
    assert torch.isnan(zero).all()


def test_direction_cosine_ci_student_aligned_control_null():
    trait, neutral, direction = _planted(n=120)
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(60, 3, 16, generator=gen)
    student = base + 0.05 * torch.randn(60, 3, 16, generator=gen)
    student[:, 1] += 1.0 * direction  # the student shifted along the trait at layer 1
    control = base + 0.05 * torch.randn(60, 3, 16, generator=gen)
    res = direction_cosine_ci(
        trait, neutral, student, base, n_boot=200, seed=0, control_acts=control
    )
    assert res["cosine"][1] > 0.8 and res["lo"][1] > 0.5
    assert all(lo <= c <= hi for lo, c, hi in zip(res["lo"], res["cosine"], res["hi"]))
    assert abs(res["control"]["cosine"][1]) < 0.5
    assert res["diff_vs_control"]["lo"][1] > 0
    json.dumps(res)
    with pytest.raises(ValueError, match="paired"):
        direction_cosine_ci(trait, neutral, student[:10], base, n_boot=10)


# --- probes ----------------------------------------------------------------------------------


def test_probes_find_planted_layer_and_chance_elsewhere():
    trait, neutral, _ = _planted(n=150, strength=4.0)
    res = train_probes(trait, neutral, test_frac=0.3, seed=0)
    assert res.auroc[1] > 0.95
    assert res.auroc[0] < 0.7 and res.auroc[2] < 0.7
    d = res.to_dict()
    assert d["best_layer"] == 1 and d["n_train"] + d["n_test"] == 300
    json.dumps(d)
    applied = apply_probes(res, trait[:20])
    assert all(0.0 <= s <= 1.0 for s in applied["share_trait"] + applied["mean_prob"])
    assert applied["share_trait"][1] > 0.8 and applied["n"] == 20
    assert apply_probes(res, neutral[:20])["share_trait"][1] < 0.3


def test_span_share_is_one_inside_the_teachers_span_and_near_the_baseline_for_random_updates():
    import torch

    from interp.mech.alignment import span_share

    g = torch.Generator().manual_seed(0)
    b, a = torch.randn(40, 3, generator=g), torch.randn(3, 30, generator=g)
    teacher = {"layers.0.mlp.up_proj.weight": b @ a}
    inside = {"layers.0.mlp.up_proj.weight": b @ torch.randn(3, 3, generator=g) @ a}  # same row and column spaces
    res = span_share(inside, teacher, rank=3)
    assert res["share"] == pytest.approx(1.0, abs=1e-9) and res["baseline"] == pytest.approx(9 / 1200)
    rand = [span_share({"layers.0.mlp.up_proj.weight": torch.randn(40, 30, generator=g)}, teacher, rank=3)["share"]
            for _ in range(50)]  # fmt: skip
    assert sum(rand) / len(rand) == pytest.approx(9 / 1200, rel=0.25)  # chance share = r_out r_in / (d_out d_in)


def test_factored_deltas_give_the_dense_subspaces_and_span_share():
    """LoRA deltas take the exact route from their factors (QR of A and B, SVD of the r x r core);
    the angles and span share equal the dense computation's (randomised SVD at this size)."""
    from interp.lm.delta import Delta
    from interp.mech.alignment import _delta_singular, _top_singular, span_share

    g = torch.Generator().manual_seed(1)
    name = "model.layers.0.mlp.up_proj.weight"

    def lora(r):
        return Delta(factors={name: (torch.randn(r, 120, generator=g), torch.randn(200, r, generator=g))})

    s, t = lora(4), lora(6)
    dense_s, dense_t = Delta(dense_parts={name: s.dense(name)}), Delta(dense_parts={name: t.dense(name)})
    for side in ("out", "in"):
        uf, ud = _delta_singular(t, name, 8, side), _top_singular(t.dense(name), 8, side)
        assert uf.shape == ud.shape == ((200 if side == "out" else 120), 6)  # rank 6 < 8 kept
        assert torch.linalg.svdvals(uf.T @ ud).min() > 1 - 1e-9  # the same subspace
        fac = delta_subspace_angles(s, t, rank=4, side=side).per_tensor[name]
        den = delta_subspace_angles(dense_s, dense_t, rank=4, side=side).per_tensor[name]
        assert torch.allclose(fac, den, atol=1e-6), (fac, den)
    for rank in (2, 6):  # top-2: the order of the core's singular vectors matters
        assert span_share(s, t, rank)["share"] == pytest.approx(span_share(dense_s, dense_t, rank)["share"], rel=1e-6)
