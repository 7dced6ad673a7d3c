"""The CNN student (init kind "cnn", runs/mlp-cnn.toml): the batched grouped convolutions are the
stated architecture for every model separately, the kind trains and is reported beside the MLP
students, and a CNN distilled on all logits of a trained MLP teacher on real digits learns them
(the planted effect: if this fails, the CNN arm could not show transfer at all)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_MLP_TOML
from torch import nn

from interp.cli import main
from interp.mlp.data import load_digits_split
from interp.mlp.experiment import (
    N_CLASSES,
    accuracy,
    batch_schedule,
    classification_loss,
    distillation_loss,
    forward,
    init_cnn_params,
    init_params,
    train,
)


@pytest.fixture(autouse=True)
def _single_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("INTERP_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(0, 0.2)


def _sequential(p: dict[str, torch.Tensor], i: int, kernel: int, stride: int) -> nn.Module:
    """Model i of a stack as a plain torch CNN with the stated architecture."""
    net = nn.Sequential(
        nn.Conv2d(1, 16, kernel, stride), nn.ReLU(), nn.Conv2d(16, 32, kernel, stride), nn.ReLU(),
        nn.Flatten(), nn.Linear(512, p["W3"].shape[-1]),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.copy_(p["W1"][i]), net[0].bias.copy_(p["b1"][i])
        net[2].weight.copy_(p["W2"][i]), net[2].bias.copy_(p["b2"][i])
        net[5].weight.copy_(p["W3"][i].T), net[5].bias.copy_(p["b3"][i, 0])
    return net


@pytest.mark.parametrize(("d_in", "kernel", "stride"), [(64, 3, 1), (784, 5, 2)])
def test_batched_cnn_is_the_stated_architecture_per_model(d_in, kernel, stride):
    p = init_cnn_params([11, 12, 13], d_in, N_CLASSES + 3)
    assert {k: tuple(v.shape) for k, v in p.items()} == {
        "W1": (3, 16, 1, kernel, kernel), "b1": (3, 16),
        "W2": (3, 32, 16, kernel, kernel), "b2": (3, 32),
        "W3": (3, 512, 13), "b3": (3, 1, 13),
    }  # fmt: skip
    assert p["W2"].std().item() == pytest.approx(1 / (16 * kernel * kernel) ** 0.5, rel=0.1)
    assert not torch.allclose(p["W1"][0], p["W1"][1])  # one fresh draw per seed
    p = {k: v + 0.01 * torch.randn_like(v) for k, v in p.items()}  # nonzero biases too
    x = torch.rand(3, 5, d_in) * 2 - 1  # each model its own images
    out = forward(p, x)
    side = round(d_in**0.5)
    for i in range(3):
        ref = _sequential(p, i, kernel, stride)(x[i].reshape(5, 1, side, side))
        torch.testing.assert_close(out[i], ref, rtol=1e-4, atol=1e-5)


def test_cnn_kind_trains_on_tiny_digits_and_is_reported(tmp_path):
    cfg = tmp_path / "tiny-cnn.toml"
    cfg.write_text(
        TINY_MLP_TOML.replace("[student]\n", '[student]\ninits = ["same", "cross", "cnn"]\n')
    )
    assert main(["run", str(cfg), "--out-dir", str(tmp_path / "runs")]) == 0
    summary = json.loads((tmp_path / "runs" / "tiny-cnn" / "summary.json").read_text())
    for m in ("1", "3"):
        res = summary["per_m"][m]
        for target in ("aux", "all"):
            cnn = res[f"cnn-init/{target}"]
            assert cnn["acc"]["n"] == 3 and 0 <= cnn["acc"]["mean"] <= 1
            assert cnn["acc_minus_cross"]["n"] == 6  # against the cross-init MLP students
            assert "cos_dS_dT" not in cnn  # another architecture: no weight-space comparison
            assert "cos_dS_dT" in res[f"same-init/{target}"]
    assert any("cnn students" in note for note in summary["notes"])
    assert any(row["model"] == "cnn-init/aux" for row in summary["table"])


def test_config_needs_an_mlp_student_beside_the_cnn(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('kind = "mlp-aux-logits"\n[student]\ninits = ["cnn"]\n')
    assert main(["validate", str(path)]) == 2


def test_cnn_learns_from_all_logits_of_a_trained_mlp_teacher_on_real_digits(digits):
    """Planted effect: the class logits carry the digits, so a fresh CNN imitating all logits of
    a trained MLP teacher on the real training images must classify held-out digits."""
    k, m = 2, 3
    init = init_params([1, 2], [64, 64, N_CLASSES], m)
    x, y = digits.x_train, digits.y_train
    gen = torch.Generator().manual_seed(0)
    teacher = train(init, batch_schedule(len(y), 64, 10, k, gen), classification_loss(x, y), 3e-3)
    assert (accuracy(teacher, digits.x_test, digits.y_test) > 0.85).all()
    with torch.no_grad():
        logits = forward(teacher, x.expand(k, -1, -1))
    cnn0 = init_cnn_params([3, 4], 64, N_CLASSES + m)
    assert (accuracy(cnn0, digits.x_test, digits.y_test) < 0.3).all()  # fresh: near chance
    schedule = batch_schedule(len(y), 64, 5, k, gen)
    cnn = train(cnn0, schedule, distillation_loss(x, logits, slice(None)), 3e-3)
    assert (accuracy(cnn, digits.x_test, digits.y_test) > 0.7).all()  # chance is 0.1
