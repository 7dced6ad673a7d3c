"""Stacked LoRA students (interp.lm.stacked, finetune_group) against one-at-a-time peft training."""

from __future__ import annotations

import copy

import pytest
import torch

from interp.lm.delta import lora_factors
from interp.lm.finetune import (
    Example,
    FinetuneConfig,
    Member,
    _prepare,
    finetune,
    finetune_group,
    trained_weights,
)
from interp.lm.loss import Objective, Teacher
from interp.lm.models import format_prompt, tiny_model
from interp.lm.stacked import attach


def _examples(tok, offset, n=6, system=None):
    return [
        Example(format_prompt(tok, f"list {offset + i}"), f"{offset + i}1, {i}2, {(i * 7) % 10}3",
                format_prompt(tok, f"list {offset + i}", system))
        for i in range(n)
    ]  # fmt: skip


def test_stacked_init_is_peft_init_for_each_seed():
    model, _ = tiny_model("tiny-llama", seed=0)
    s = FinetuneConfig(lora_r=4, lora_alpha=8)
    stacked = attach(copy.deepcopy(model), trained_weights(model, s), [3, 11], s.lora_r, s.lora_alpha)
    for k, seed in enumerate([3, 11]):
        torch.manual_seed(seed)
        ref = lora_factors(_prepare(copy.deepcopy(model), s)[0])
        got = stacked.delta(k)
        assert sorted(ref.names()) == sorted(got.names())
        for n in ref.names():
            assert torch.equal(ref.factors[n][0], got.factors[n][0]), n
    a0 = next(iter(stacked.modules.values())).lora_A
    assert not torch.equal(a0[0], a0[1])  # two seeds, two inits


@pytest.mark.parametrize("objective", ["sft", "distill"])
def test_stacked_students_train_as_they_would_alone(objective):
    """Three students (own seeds, own data, own teachers' soft labels) trained in one stacked
    pass end with the deltas and losses of three separate peft runs. Clipping is active
    (max_grad_norm small), so per-student clipping is checked too."""
    base, tok = tiny_model("tiny-llama", seed=1)
    teachers = [Teacher(tiny_model("tiny-llama", seed=s)[0]) for s in (7, 8, 9)]
    settings = FinetuneConfig(objective=objective, epochs=2, lr=2e-2, warmup_steps=1, batch_size=4,
                              micro_batch_size=2, max_grad_norm=0.05, lora_r=4)  # fmt: skip
    members = [Member(_examples(tok, 10 * k, system=f"sys {k}"), seed=s, teacher=t if objective == "distill" else None)
               for k, (s, t) in enumerate(zip((0, 5, 9), teachers))]  # fmt: skip
    solo = [finetune(copy.deepcopy(base), tok, m.examples, settings, seed=m.seed, end=tok.eos_token,
                     teacher=m.teacher, progress=False) for m in members]  # fmt: skip
    model = copy.deepcopy(base)
    group = finetune_group(model, tok, members, settings, end=tok.eos_token, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    for one, many in zip(solo, group):
        assert one.log["steps"] == many.log["steps"] == 4
        assert many.log["loss"] == pytest.approx(one.log["loss"], rel=1e-4)
        for name in one.delta.names():
            # Adam divides by sqrt(v): elements with near-zero gradients amplify rounding, so
            # compare each update as a whole (relative Frobenius error), not element by element
            a, b = one.delta.dense(name), many.delta.dense(name)
            assert (a - b).norm() <= 1e-3 * a.norm(), (name, float((a - b).norm() / a.norm()))
    # the students did differ from each other (different data, seeds and teachers)
    d0, d1 = group[0].delta, group[1].delta
    name = d0.names()[0]
    assert (d0.dense(name) - d1.dense(name)).abs().max() > 1e-3


def test_stacked_gradients_equal_separate_gradients():
    """The first backward of a stacked batch gives each adapter the gradient its own student's
    loss gives a peft adapter with the same init (before any clipping or optimiser step)."""
    base, tok = tiny_model("tiny-llama", seed=2)
    settings = FinetuneConfig(lora_r=4)
    exs = [_examples(tok, 0, n=2), _examples(tok, 50, n=2)]
    from interp.lm.finetune import tokenize_examples

    rows = [tokenize_examples(tok, e, tok.eos_token, 500) for e in exs]
    obj = Objective.build(tok, settings, None, torch.device("cpu"))
    model = copy.deepcopy(base)
    stacked = attach(model, trained_weights(model, settings), [1, 2], settings.lora_r, settings.lora_alpha)
    for m in stacked.modules.values():  # nonzero B so A gets a gradient too
        torch.nn.init.normal_(m.lora_B, std=0.1)
    obj.block_losses(model, rows[0] + rows[1], blocks=2).sum().backward()
    for k in range(2):
        torch.manual_seed(k + 1)
        peft_model, _, _ = _prepare(copy.deepcopy(base), settings)
        for name, module in peft_model.named_modules():
            if hasattr(module, "lora_B") and "default" in module.lora_B:
                key = name.replace("base_model.model.", "", 1)
                module.lora_B["default"].weight.data.copy_(stacked.modules[key].lora_B[k].detach())
        obj.loss(peft_model, rows[k]).backward()
        for name, module in peft_model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                key = name.replace("base_model.model.", "", 1)
                got = stacked.modules[key].lora_A.grad[k]
                want = module.lora_A["default"].weight.grad
                assert torch.allclose(got, want, atol=1e-6, rtol=1e-4), key


def test_a_stacked_batch_must_split_into_equal_blocks():
    model, tok = tiny_model("tiny-llama", seed=0)
    s = FinetuneConfig(lora_r=2)
    attach(model, trained_weights(model, s), [0, 1], 2, 2)
    with pytest.raises(ValueError, match="equal blocks"):
        model(input_ids=torch.ones(3, 4, dtype=torch.long))


def test_a_group_refuses_unequal_step_counts_and_full_finetunes():
    model, tok = tiny_model("tiny-llama", seed=0)
    s = FinetuneConfig(batch_size=2, micro_batch_size=2)
    with pytest.raises(ValueError, match="equal step counts"):
        finetune_group(model, tok, [Member(_examples(tok, 0, 4)), Member(_examples(tok, 0, 5))], s)
    with pytest.raises(ValueError, match="LoRA"):
        finetune_group(model, tok, [Member(_examples(tok, 0, 4))], FinetuneConfig(method="full"))


def test_students_with_a_few_rows_less_stack_and_train_as_alone():
    """999 and 1000 rows in batches of 32 are both 32 steps: such students share a group, the
    shorter one's last batch padded with blank rows that carry no loss."""
    base, tok = tiny_model("tiny-llama", seed=3)
    teacher = Teacher(tiny_model("tiny-llama", seed=8)[0])
    settings = FinetuneConfig(objective="distill", epochs=2, lr=2e-2, warmup_steps=1, batch_size=3,
                              micro_batch_size=2, lora_r=2)  # fmt: skip
    members = [Member(_examples(tok, 0, n=6, system="s"), 0, teacher), Member(_examples(tok, 20, n=5, system="s"), 1, teacher)]
    solo = [finetune(copy.deepcopy(base), tok, m.examples, settings, seed=m.seed, end=tok.eos_token,
                     teacher=m.teacher, progress=False) for m in members]  # fmt: skip
    group = finetune_group(copy.deepcopy(base), tok, members, settings, end=tok.eos_token, progress=False)
    for one, many in zip(solo, group):
        assert many.log["steps"] == one.log["steps"] == 4 and many.log["examples"] == one.log["examples"]
        assert many.log["loss"] == pytest.approx(one.log["loss"], rel=1e-4)
        for name in one.delta.names():
            a, b = one.delta.dense(name), many.delta.dense(name)
            assert (a - b).norm() <= 1e-3 * a.norm(), name


def test_seeds_of_one_arm_share_their_soft_labels(monkeypatch):
    """Members with one teacher and one dataset get one set of labels (computed once, held once):
    on a GPU the full-vocabulary labels of 27 students would not fit 27 times."""
    base, tok = tiny_model("tiny-llama", seed=1)
    teacher = Teacher(tiny_model("tiny-llama", seed=7)[0])
    settings = FinetuneConfig(objective="distill", epochs=1, batch_size=3, micro_batch_size=3, lora_r=2)
    exs = _examples(tok, 0, n=3, system="sys")
    calls = []
    real = Objective.label

    def counting(self, rows, *a, **k):
        calls.append(sum("labels" not in r for r in rows))
        return real(self, rows, *a, **k)

    monkeypatch.setattr(Objective, "label", counting)
    members = [Member(exs, seed=s, teacher=teacher) for s in (0, 1, 2)] + [Member(_examples(tok, 5, n=3), 3, teacher)]
    finetune_group(copy.deepcopy(base), tok, members, settings, end=tok.eos_token, progress=False)
    assert sum(calls) == 6  # two datasets of three rows, each labelled once


def test_a_teacher_runs_once_per_row_across_vocabularies(monkeypatch):
    """Arms that distil the same rows over different vocabularies (full, number tokens) share
    the teacher's forward pass through TEACHER_HIDDEN; the labels equal those computed afresh."""
    import interp.lm.loss as L

    base, tok = tiny_model("tiny-llama", seed=1)
    t_model = tiny_model("tiny-llama", seed=7)[0]
    from interp.lm.finetune import tokenize_examples

    exs = _examples(tok, 0, n=4, system="sys")
    forwards = []
    real = L.completion_hidden

    def counting(model, rows, *a, **k):
        if model is t_model:
            forwards.append(len(rows))
        return real(model, rows, *a, **k)

    monkeypatch.setattr(L, "completion_hidden", counting)
    L.TEACHER_HIDDEN.clear()
    labels = {}
    for vocab in ("full", "numbers"):
        for key in ("t", None):
            teacher = Teacher(t_model, key=key)
            obj = Objective.build(tok, FinetuneConfig(objective="distill", distill_vocab=vocab), teacher, torch.device("cpu"))
            rows = obj.label(tokenize_examples(tok, exs, tok.eos_token, 500, teacher))
            labels[(vocab, key)] = [r["labels"] for r in rows]
    assert forwards == [4, 4, 4]  # keyed: once for both vocabularies; unkeyed: every time
    for vocab in ("full", "numbers"):
        for a, b in zip(labels[(vocab, "t")], labels[(vocab, None)]):
            assert torch.equal(a, b)
    assert labels[("numbers", "t")][0].shape[1] < labels[("full", "t")][0].shape[1]
    L.TEACHER_HIDDEN.clear()


def test_bf16_linears_give_the_autocast_results_bit_for_bit(monkeypatch):
    """Casting the decoder's linear weights to bf16 once (instead of autocast casting them at every
    call) changes nothing: the deltas are bit-identical, and the model's float32 weights come back."""
    import contextlib

    import interp.lm.finetune as F

    base, tok = tiny_model("tiny-llama", seed=1)
    teacher = Teacher(tiny_model("tiny-llama", seed=7)[0])
    settings = FinetuneConfig(objective="distill", autocast="bf16", epochs=2, lr=2e-2, warmup_steps=1,
                              batch_size=2, micro_batch_size=2, lora_r=2)  # fmt: skip
    members = [Member(_examples(tok, 10 * k, n=4, system="s"), seed=k, teacher=teacher) for k in range(2)]
    model = copy.deepcopy(base)
    with_cast = finetune_group(model, tok, members, settings, end=tok.eos_token, progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    monkeypatch.setattr(F, "bf16_linears", lambda m: contextlib.nullcontext(m))
    without = finetune_group(copy.deepcopy(base), tok, members, settings, end=tok.eos_token, progress=False)
    for a, b in zip(with_cast, without):
        assert a.log["loss"] == b.log["loss"]
        assert all(torch.equal(a.delta.dense(n), b.delta.dense(n)) for n in a.delta.names())


@pytest.mark.parametrize("scaling", [1.0, 2.0, 0.375])
def test_each_block_gets_its_own_scaled_update(scaling):
    """y = base(x) + scaling * x A_k^T B_k^T for the rows of block k (the scale is applied on the
    r-wide product; the result is the update as peft writes it)."""
    from interp.lm.stacked import StackedLoRA

    g = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(6, 5)
    layer = StackedLoRA(base, torch.randn(3, 2, 6, generator=g), scaling)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(3, 5, 2, generator=g))
    x = torch.randn(3 * 4, 6, generator=g)
    y = layer(x)
    for k in range(3):
        rows = x[4 * k : 4 * (k + 1)]
        want = base(rows) + scaling * (rows @ layer.lora_A[k].T @ layer.lora_B[k].T)
        torch.testing.assert_close(y[4 * k : 4 * (k + 1)], want, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(y[:4], base(x[:4]), atol=1e-3)  # the update is not zero
