"""The MLP subliminal-learning experiment: batched training is exact, the controls are real
controls, the theorem's sign holds for a small teacher step, and the CLI writes a summary."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from helpers import TINY_MLP_TOML

from interp.cli import main
from interp.config import ConfigError, build
from interp.mlp.data import load_digits_split, load_mnist, uniform_noise
from interp.mlp.experiment import (
    N_CLASSES,
    MLPConfig,
    accuracy,
    batch_schedule,
    classification_loss,
    delta,
    derangement,
    distillation_loss,
    first_step_alignment,
    forward,
    init_params,
    train,
    train_students,
)
from interp.registry import derived_seed


@pytest.fixture(autouse=True)
def _seeded_single_thread(monkeypatch):
    """Tiny models: one thread is fastest, and two threads fighting a busy second core for
    hundreds of microsecond-sized ops can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("INTERP_THREADS", "1")  # what the CLI's configure_threads reads
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(0, 0.2)


def _gen(i: int) -> torch.Generator:
    return torch.Generator().manual_seed(i)


def _tiny(k: int, m: int = 3, hidden: tuple[int, ...] = (16, 16), d_in: int = 64):
    return init_params([derived_seed(0, 0, i) for i in range(k)], [d_in, *hidden, N_CLASSES], m)


def test_init_follows_protocol_and_class_part_does_not_depend_on_m():
    p = init_params([derived_seed(0, 0, i) for i in range(4)], [64, 256, 256, N_CLASSES], 3)
    assert (
        p["W1"].shape == (4, 64, 256)
        and p["W3"].shape == (4, 256, 13)
        and p["b3"].shape == (4, 1, 13)
    )
    assert p["W1"].std().item() == pytest.approx(1 / 64**0.5, rel=0.05)
    assert p["W2"].std().item() == pytest.approx(1 / 256**0.5, rel=0.05)
    assert all(p[b].abs().max() == 0 for b in ("b1", "b2", "b3"))
    q = init_params([derived_seed(0, 0, i) for i in range(4)], [64, 256, 256, N_CLASSES], 50)
    assert torch.equal(p["W1"], q["W1"]) and torch.equal(
        p["W3"][..., :N_CLASSES], q["W3"][..., :N_CLASSES]
    )
    assert not torch.allclose(p["W1"][0], p["W1"][1])  # seeds differ


def test_batched_training_equals_separate_trainings(digits):
    k = 3
    init = _tiny(k)
    x, y = digits.x_train[:200], digits.y_train[:200]
    batches = batch_schedule(len(y), 32, 2, k, _gen(1))  # 7 batches per epoch, last one partial
    teacher = train(init, batches, classification_loss(x, y), lr=1e-3)
    noise = uniform_noise(100, 64, _gen(2))
    with torch.no_grad():
        t_logits = forward(teacher, noise.expand(k, -1, -1))
    s_batches = batch_schedule(100, 16, 2, k, _gen(3))
    student = train(
        init, s_batches, distillation_loss(noise, t_logits, slice(N_CLASSES, None)), lr=1e-3
    )
    assert not torch.allclose(teacher["W1"], init["W1"]) and not torch.allclose(
        student["W1"], init["W1"]
    )
    for i in range(k):
        one = {n: v[i : i + 1] for n, v in init.items()}
        t_i = train(one, [b[i : i + 1] for b in batches], classification_loss(x, y), lr=1e-3)
        s_i = train(one, [b[i : i + 1] for b in s_batches],
                    distillation_loss(noise, t_logits[i : i + 1], slice(N_CLASSES, None)), lr=1e-3)  # fmt: skip
        for n in init:
            torch.testing.assert_close(t_i[n][0], teacher[n][i], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(s_i[n][0], student[n][i], rtol=1e-4, atol=1e-5)


def test_teacher_training_leaves_aux_logits_untouched(digits):
    init = _tiny(2)
    teacher = train(
        init,
        batch_schedule(200, 50, 1, 2, _gen(0)),
        classification_loss(digits.x_train[:200], digits.y_train[:200]),
        1e-3,
    )
    assert torch.equal(teacher["W3"][..., N_CLASSES:], init["W3"][..., N_CLASSES:])
    assert not torch.equal(teacher["W3"][..., :N_CLASSES], init["W3"][..., :N_CLASSES])


def _students_cfg(epochs: int) -> MLPConfig:
    return build(
        MLPConfig,
        {
            "name": "t",
            "model": {"hidden": [16]},
            "student": {"epochs": epochs, "batch_size": 64},
            "sweep": {"n_models": 4},
        },
    )


def test_zero_distillation_steps_leave_every_student_at_its_init(digits):
    cfg = _students_cfg(epochs=0)
    init = _tiny(4, hidden=(16,))
    teacher = train(
        init,
        batch_schedule(300, 64, 2, 4, _gen(0)),
        classification_loss(digits.x_train, digits.y_train),
        1e-3,
    )
    out = train_students(cfg, digits, uniform_noise(200, 64, _gen(1)), init, teacher)
    assert out["steps"] == 0
    ref = accuracy(init, digits.x_test, digits.y_test).tolist()
    perm = out["permutation"]
    for init_kind in ("same", "cross"):
        for target in ("aux", "all"):
            mt = out[f"{init_kind}-init/{target}"]
            assert mt["delta_norm_ratio"] == [0.0] * 4  # dS = 0 exactly
            assert all(
                c is None for c in mt["cos"]["overall"]
            )  # cosine of a zero delta is undefined
            expected = ref if init_kind == "same" else [ref[j] for j in perm]
            assert mt["acc"] == pytest.approx(expected)
    assert train(init, [], classification_loss(digits.x_train, digits.y_train), 1e-3)["W2"].equal(
        init["W2"]
    )


def test_permutation_control_changes_every_seeds_init(digits):
    for n in (2, 3, 5, 25, 100):
        for s in range(20):
            perm = derangement(n, _gen(s))
            assert sorted(perm.tolist()) == list(range(n)) and (perm != torch.arange(n)).all()
    cfg = _students_cfg(epochs=1)
    init = _tiny(4, hidden=(16,))
    out = train_students(cfg, digits, uniform_noise(128, 64, _gen(1)), init, init)
    perm = torch.tensor(out["permutation"])
    cross = {k: v[perm] for k, v in init.items()}
    for i in range(4):  # every seed's cross-init student starts somewhere else
        assert perm[i] != i and not torch.allclose(cross["W1"][i], init["W1"][i])


def test_m1_aux_only_distillation_has_zero_gradient():
    init = _tiny(2, m=1)
    noise = uniform_noise(64, 64, _gen(0))
    t_logits = torch.randn(2, 64, N_CLASSES + 1)
    student = train(
        init,
        batch_schedule(64, 32, 2, 2, _gen(1)),
        distillation_loss(noise, t_logits, slice(N_CLASSES, None)),
        1e-2,
    )
    for k in init:
        assert torch.equal(student[k], init[k])


def test_first_imitation_step_moves_toward_a_slightly_trained_teacher(digits):
    """Theorem 1 (Cloud et al.): for a teacher one small step from the shared init, the
    student's first gradient step on the teacher's outputs has a non-negative inner product
    with the teacher's delta, for any inputs, also on the aux logits alone."""
    k = 4
    init = _tiny(k)
    teacher = train(
        init,
        batch_schedule(256, 256, 1, k, _gen(0)),
        classification_loss(digits.x_train, digits.y_train),
        lr=1e-4,
    )
    d_t = delta(teacher, init)
    noise = uniform_noise(256, 64, _gen(1))
    with torch.no_grad():
        t_logits = forward(teacher, noise.expand(k, -1, -1))
    idx0 = batch_schedule(256, 128, 1, k, _gen(2))[0]
    for sel in (slice(N_CLASSES, None), slice(None)):
        same = first_step_alignment(init, distillation_loss(noise, t_logits, sel), idx0, d_t)
        assert (same["grad_dot"] > 0).all() and (same["grad_cos"] > 0).all()


def _write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_local_mnist_idx_files_are_read_and_scaled(tmp_path):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (4, 28, 28))}
    images["train"][0, 0, 0], images["train"][0, 0, 1] = 0, 255
    for split, x in images.items():
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", x)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(len(x)) % 10)
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (4, 784) and data.d_in == 784
    assert data.x_train[0, 0] == -1.0 and data.x_train[0, 1] == 1.0
    assert data.y_test.tolist() == [0, 1, 2, 3]


def test_config_rejects_bad_values(tmp_path):
    for bad in (
        "[sweep]\nn_models = 1",
        "[sweep]\nm = [0, 3]",
        "[data]\nsource = 'mnist'",
        "[student]\ntargets = ['class']",
    ):
        path = tmp_path / "bad.toml"
        path.write_text('kind = "mlp-aux-logits"\n' + bad + "\n")
        assert main(["validate", str(path)]) == 2


def test_cli_runs_tiny_config_and_writes_summary(tmp_path, capsys):
    cfg = tmp_path / "tiny-mlp.toml"
    cfg.write_text(TINY_MLP_TOML)
    assert main(["run", str(cfg), "--out-dir", str(tmp_path / "runs")]) == 0
    root = tmp_path / "runs" / "tiny-mlp"
    summary = json.loads((root / "summary.json").read_text())
    assert set(summary["per_m"]) == {"1", "3"}
    kinds = {
        "reference",
        "teacher",
        "same-init/aux",
        "same-init/all",
        "cross-init/aux",
        "cross-init/all",
    }
    assert set(summary["per_m"]["3"]) == kinds
    assert len(summary["table"]) == 2 * len(kinds)
    assert summary["per_m"]["3"]["teacher"]["acc"]["n"] == 3
    assert "figures" not in summary and not (root / "figures").exists()  # the report draws them
    assert "same-init/aux" in capsys.readouterr().out  # the table was printed
    # A rerun reuses every stage.
    assert main(["run", str(cfg), "--out-dir", str(tmp_path / "runs")]) == 0
    again = json.loads((root / "summary.json").read_text())
    assert len(again["provenance"]["stages_cached"]) == 4
    assert again["per_m"] == summary["per_m"]


def test_build_reports_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key"):
        build(MLPConfig, {"name": "x", "teacher": {"learning_rate": 1.0}})
