"""The KL-to-base penalty (issue 30 item 4, a training-time defence): kl_base x KL(base || student)
over the full vocabulary at the loss positions, the base being the student's initialisation.
Off, training is the code path it was; on, the term is what its definition says, zero at the
initialisation, the same in chunks, stacked and alone, and it measurably keeps a student nearer
its base."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from interp.lm.finetune import (
    Example,
    FinetuneConfig,
    Member,
    _prepare,
    finetune,
    finetune_group,
    tokenize_examples,
)
from interp.lm.loss import Objective, Teacher, completion_logits
from interp.lm.models import format_prompt, tiny_model
from interp.lm.settings import settings_key, stack_key

CPU = torch.device("cpu")


def _examples(tok, offset=0, n=8, system="You love owls."):  # noqa: ANN001, ANN202
    return [Example(format_prompt(tok, f"list {offset + i}"), f"{offset + i}1, {i}2, {(i * 7) % 10}3",
                    format_prompt(tok, f"list {offset + i}", system)) for i in range(n)]  # fmt: skip


def _logits(model, tok, rows) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return completion_logits(model, rows, tok.pad_token_id, CPU)[0]


def _kl(base_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """[position]: KL(base || student), written out (independently of `interp.lm.loss`)."""
    b, s = torch.log_softmax(base_logits, -1), torch.log_softmax(student_logits, -1)
    return (b.exp() * (b - s)).sum(-1)


def test_off_it_is_the_old_code_path_and_on_the_training_loop_uses_it(monkeypatch):
    # kl_base = 0 never reaches the penalty (bit-identical to the loop before it existed); any
    # kl_base > 0 does, alone (LoRA and full) and stacked
    calls = []
    real = Objective._with_base

    def spy(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(self.kl_base)
        return real(self, *a, **k)

    monkeypatch.setattr(Objective, "_with_base", spy)
    base, tok = tiny_model("tiny-llama", seed=1)
    for kl in (0.0, 0.5):
        for method in ("lora", "full"):
            st = FinetuneConfig(method=method, kl_base=kl, epochs=1, batch_size=4, micro_batch_size=4, lr=1e-2)
            finetune(copy.deepcopy(base), tok, _examples(tok, n=4), st, end=tok.eos_token, progress=False)
        st = FinetuneConfig(kl_base=kl, epochs=1, batch_size=4, micro_batch_size=4, lr=1e-2, lora_r=2)
        finetune_group(copy.deepcopy(base), tok, [Member(_examples(tok, n=4), 0), Member(_examples(tok, 9, n=4), 1)],
                       st, end=tok.eos_token, progress=False)  # fmt: skip
        assert calls == ([] if kl == 0 else [kl] * 3), (kl, calls)
        calls.clear()


@pytest.mark.parametrize(("objective", "vocab"), [("sft", "full"), ("distill", "full"), ("distill", "numbers")])
def test_the_penalty_is_its_definition_zero_at_the_init_and_the_same_in_chunks(objective, vocab):
    base, tok = tiny_model("tiny-llama", seed=2)
    teacher = Teacher(tiny_model("tiny-llama", seed=5)[0]) if objective == "distill" else None
    settings = FinetuneConfig(objective=objective, distill_vocab=vocab, lora_r=4)
    rows = tokenize_examples(tok, _examples(tok, n=3), tok.eos_token, 64, teacher)
    model, _, _ = _prepare(copy.deepcopy(base), settings)

    def loss_and_grads(kl: float, max_logits: int = 2**40) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obj = Objective.build(tok, dataclasses.replace(settings, kl_base=kl), teacher, CPU)
        obj.base, obj.max_logits = (model, model.disable_adapter), max_logits
        model.zero_grad(set_to_none=True)
        loss = obj.loss(model, rows)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # at the initialisation (B = 0) the student is its base: no penalty, no gradient from it
    (l0, g0), (l3, g3) = loss_and_grads(0.0), loss_and_grads(3.0)
    torch.testing.assert_close(l3, l0, rtol=1e-6, atol=1e-7)
    assert g0.keys() == g3.keys() and g0
    for n in g0:
        torch.testing.assert_close(g3[n], g0[n], rtol=1e-4, atol=1e-6)
    # moved off the base, the loss gains exactly kl_base x KL(base || student), in chunks or whole
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2, generator=torch.Generator().manual_seed(len(name)))
    with model.disable_adapter():
        base_logits = _logits(model, tok, rows)
    student_kl = float(_kl(base_logits, _logits(model, tok, rows)).sum())
    assert student_kl > 1e-3  # the student did move
    (l0, g0), (l3, g3) = loss_and_grads(0.0), loss_and_grads(3.0)
    torch.testing.assert_close(l3 - l0, torch.tensor(3.0 * student_kl), rtol=1e-4, atol=1e-6)
    lc, gc = loss_and_grads(3.0, max_logits=7)  # one position per chunk
    torch.testing.assert_close(lc, l3, rtol=1e-5, atol=1e-6)
    for n in g3:
        torch.testing.assert_close(gc[n], g3[n], rtol=1e-4, atol=1e-6)
    assert any((g3[n] - g0[n]).abs().max() > 1e-6 for n in g0)  # the penalty pulls the gradient


@pytest.mark.parametrize(("method", "objective", "lr"), [("lora", "distill", 3e-2), ("full", "sft", 3e-3)])
def test_a_large_penalty_keeps_the_student_nearer_its_base(method, objective, lr):
    # measured: the same student, data and steps with kl_base 0 and 5; with the penalty the
    # update is smaller and the output distribution stays closer to the base's, on the training
    # rows and on held-out rows
    base, tok = tiny_model("tiny-llama", seed=1)
    teacher = Teacher(tiny_model("tiny-llama", seed=7)[0]) if objective == "distill" else None
    rows = {"train": tokenize_examples(tok, _examples(tok), tok.eos_token, 64),
            "held-out": tokenize_examples(tok, _examples(tok, offset=50, n=6), tok.eos_token, 64)}  # fmt: skip
    base_logits = {k: _logits(base, tok, r) for k, r in rows.items()}
    norm, kl = {}, {}
    for w in (0.0, 5.0):
        st = FinetuneConfig(method=method, objective=objective, kl_base=w, epochs=4, lr=lr, warmup_steps=1,
                            batch_size=4, micro_batch_size=4)  # fmt: skip
        res = finetune(copy.deepcopy(base), tok, _examples(tok), st, seed=0, end=tok.eos_token, teacher=teacher,
                       progress=False)  # fmt: skip
        moved = res.delta.apply(copy.deepcopy(base))
        norm[w] = sum(res.delta.sq_norm(n) for n in res.delta) ** 0.5
        kl[w] = {k: float(_kl(base_logits[k], _logits(moved, tok, r)).mean()) for k, r in rows.items()}
    assert norm[5.0] < (0.9 if method == "lora" else 1.0) * norm[0.0], norm  # Adam: lr bounds each step
    for k in rows:
        assert kl[0.0][k] > 1e-3 and kl[5.0][k] < 0.6 * kl[0.0][k], (k, kl)


def test_stacked_students_with_the_penalty_train_as_they_would_alone():
    # the stacked reference is the shared base with every adapter off (`Stacked.disabled`)
    base, tok = tiny_model("tiny-llama", seed=1)
    teacher = Teacher(tiny_model("tiny-llama", seed=7)[0])
    settings = FinetuneConfig(objective="distill", kl_base=2.0, epochs=2, lr=2e-2, warmup_steps=1, batch_size=4,
                              micro_batch_size=2, lora_r=4)  # fmt: skip
    members = [Member(_examples(tok, 10 * k, n=6, system=f"sys {k}"), seed=s, teacher=teacher)
               for k, s in enumerate((0, 5))]  # fmt: skip
    solo = [finetune(copy.deepcopy(base), tok, m.examples, settings, seed=m.seed, end=tok.eos_token,
                     teacher=m.teacher, progress=False) for m in members]  # fmt: skip
    plain = finetune(copy.deepcopy(base), tok, members[0].examples, dataclasses.replace(settings, kl_base=0.0),
                     seed=0, end=tok.eos_token, teacher=teacher, progress=False)  # fmt: skip
    assert plain.log["loss"][1:] != pytest.approx(solo[0].log["loss"][1:], rel=1e-3)  # the penalty is on
    group = finetune_group(copy.deepcopy(base), tok, members, settings, end=tok.eos_token, progress=False)
    for one, many in zip(solo, group):
        assert many.log["loss"] == pytest.approx(one.log["loss"], rel=1e-4)
        for name in one.delta.names():
            a, b = one.delta.dense(name), many.delta.dense(name)
            assert (a - b).norm() <= 1e-3 * a.norm(), name


def test_the_weight_enters_keys_and_stacking_only_when_set():
    from interp.subliminal.config import StudentConfig, TrainConfig

    assert "kl_base" not in settings_key(FinetuneConfig())  # older student keys stay valid
    assert settings_key(FinetuneConfig(kl_base=0.5))["kl_base"] == 0.5
    assert stack_key(FinetuneConfig(kl_base=0.5)) != stack_key(FinetuneConfig())  # one weight per stacked group
    train = TrainConfig(kl_base=0.25)
    assert StudentConfig("s").settings(train).kl_base == 0.25
    assert StudentConfig("s", kl_base=2.0).settings(train).kl_base == 2.0
    assert StudentConfig("s", kl_base=0.0).settings(train).kl_base == 0.0  # a student may switch it off


def test_a_negative_weight_is_one_line_naming_it():
    from helpers import tiny_subliminal_config

    from interp.config import ConfigError, build
    from interp.subliminal.config import SubliminalConfig

    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["students"] = [{"name": "a", "kl_base": -1.0}]
    with pytest.raises(ConfigError) as e:
        build(SubliminalConfig, raw)
    assert "kl_base" in str(e.value) and "-1.0" in str(e.value) and "\n" not in str(e.value), str(e.value)
