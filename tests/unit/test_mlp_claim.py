"""The paper's MLP contrast on a small planted case (sklearn digits, seeded): aux-only students
from the teacher's init pass the claim's check and cross-init students do not; the new arms
(layer-mixed inits, the gradient-projection defence) start and step where they should."""

from __future__ import annotations

import pytest
import torch

from interp.config import build
from interp.mlp.claim import claim_check
from interp.mlp.data import load_digits_split, uniform_noise
from interp.mlp.experiment import (
    N_CLASSES,
    MLPConfig,
    distillation_loss,
    forward,
    generator,
    gradient,
    init_params,
    start_index,
    train_students,
    train_teachers,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(0, 0.2)


def _cfg(**student) -> MLPConfig:
    # planted: a strong case (m = 50, where the paper's effect is largest), small and seeded
    return build(MLPConfig, {
        "name": "planted", "seed": 0, "model": {"hidden": [64, 64]},
        "teacher": {"batch_size": 64, "epochs": 8},
        "student": {"batch_size": 64, "epochs": 8, "targets": ["aux"], **student},
        "sweep": {"n_models": 6, "m": [50]},
    })  # fmt: skip


def test_same_init_students_pass_the_claim_and_cross_init_students_do_not(digits):
    cfg = _cfg()
    init, teacher = train_teachers(cfg, digits, 50, torch.device("cpu"))
    noise = uniform_noise(len(digits.y_train), digits.d_in, generator(cfg.seed, 1))
    out = train_students(cfg, digits, noise, init, teacher)
    same, cross = out["same-init/aux"]["acc"], out["cross-init/aux"]["acc"]
    check = claim_check(same, cross, chance=0.1)
    assert check["result"] == "supported", check
    # the same check with a cross-init student in the same-init role must fail
    assert claim_check(cross, cross, chance=0.1)["result"] == "not supported"
    # and a cross-init arm that learned as much as same-init breaks the other half
    assert claim_check(same, same, chance=0.1)["result"] == "not supported"


def test_claim_check_reads_the_intervals():
    flat = [0.1, 0.11, 0.09, 0.1, 0.1]
    assert claim_check([0.5, 0.45, 0.55, 0.5], flat, 0.1)["result"] == "supported"
    assert claim_check([0.1, 0.5, 0.12, 0.4], flat, 0.1)["result"] == "inconclusive"  # wide


def test_mixed_inits_take_each_layer_from_the_right_seed(digits):
    n, perm = 4, torch.tensor([1, 2, 3, 0])
    inits = ["same", "cross", "shared-hidden", "shared-head"]
    idx = {k: start_index(inits, k, n, perm, 3).view(4, n) for k in ("W1", "b2", "W3", "b3")}
    own = torch.arange(n)
    for k in ("W1", "b2"):  # hidden layers
        assert [r.tolist() for r in idx[k]] == [own.tolist(), perm.tolist(), own.tolist(),
                                                perm.tolist()]  # fmt: skip
    for k in ("W3", "b3"):  # output layer
        assert [r.tolist() for r in idx[k]] == [own.tolist(), perm.tolist(), perm.tolist(),
                                                own.tolist()]  # fmt: skip
    cfg = _cfg(epochs=0, inits=inits)
    init = init_params([11, 12, 13, 14, 15, 16], [64, 64, 64, N_CLASSES], 5)
    out = train_students(cfg, digits, uniform_noise(64, 64, generator(0, 1)), init, init)
    assert out["steps"] == 0 and set(out) >= {f"{k}-init/aux" for k in inits}


def test_projection_removes_the_class_logit_direction_per_model():
    init = init_params([1, 2, 3], [64, 16, 16, N_CLASSES], 5)
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    noise = uniform_noise(32, 64, generator(0, 2))
    teacher = {k: v + 0.05 * torch.randn_like(v) for k, v in init.items()}
    with torch.no_grad():
        t_logits = forward(teacher, noise.expand(3, -1, -1))
    aux = distillation_loss(noise, t_logits, slice(N_CLASSES, None))
    cls = distillation_loss(noise, t_logits, slice(None, N_CLASSES))
    idx = torch.arange(32).repeat(3, 1)
    g, h = gradient(params, idx, aux), gradient(params, idx, cls)
    p = gradient(params, idx, aux, project_out=cls)

    def dot(a, b):
        return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)

    assert (dot(g, h).abs() > 1e-6).all()  # there is a shared component to remove
    assert torch.allclose(dot(p, h), torch.zeros(3), atol=1e-6 * dot(g, h).abs().max().item())
    # only that component goes: g - p is parallel to h, model by model
    rest = {k: g[k] - p[k] for k in g}
    cos = dot(rest, h) / (dot(rest, rest).sqrt() * dot(h, h).sqrt())
    assert torch.allclose(cos.abs(), torch.ones(3), atol=1e-4)


def test_summary_states_each_kind_against_cross_init_of_its_target():
    from scipy import stats

    from interp.mlp.measure import summarise_m

    def kind(acc):
        return {"acc": acc, "cos": {"overall": [0.1] * len(acc)}, "delta_norm_ratio": [1.0] * 4}

    same, cross, head = [0.5, 0.6, 0.55, 0.52], [0.1, 0.12, 0.09, 0.11], [0.2, 0.25, 0.3, 0.22]
    res = summarise_m({"reference_acc": cross, "teacher_acc": [0.9] * 4}, {
        "permutation": [1, 2, 3, 0], "same-init/aux": kind(same), "cross-init/aux": kind(cross),
        "shared-head-init/aux": kind(head), "same-init/all": kind(same),
    })  # fmt: skip
    d = res["shared-head-init/aux"]["acc_minus_cross"]
    ref = stats.ttest_ind(head, cross, equal_var=False)
    assert d["mean"] == pytest.approx(sum(head) / 4 - sum(cross) / 4)
    assert (d["lo"], d["hi"]) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert "acc_minus_cross" not in res["cross-init/aux"]
    assert "acc_minus_cross" not in res["same-init/all"]  # no cross-init/all to compare with
