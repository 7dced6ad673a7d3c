"""Soft labels: restricted heads equal the full head's columns; cross-tokenizer distillation runs and learns."""

from __future__ import annotations

import copy

import pytest
import torch

from interp.lm.finetune import Example, FinetuneConfig, finetune, tokenize_examples
from interp.lm.loss import Objective, Teacher, completion_logits
from interp.lm.models import tiny_model


def _examples(n: int = 8) -> list[Example]:
    return [Example("<user>go<eos>\n<assistant>", f"{i}{i}, {i + 3}", "<system>x<eos>\n<user>go<eos>\n<assistant>") for i in range(n)]


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_restricted_head_equals_the_full_head_columns(kind):
    model, tok = tiny_model(kind, seed=1)
    tok.padding_side = "right"
    rows = tokenize_examples(tok, _examples(3), "<eos>", 64)
    vocab = torch.tensor([5, 9, 17, 40])
    with torch.no_grad():
        full, targets = completion_logits(model, rows, tok.pad_token_id, torch.device("cpu"))
        part, targets2 = completion_logits(model, rows, tok.pad_token_id, torch.device("cpu"), vocab=vocab)
    assert torch.allclose(full[:, vocab], part, atol=1e-5)
    assert torch.equal(targets, targets2)


def test_cross_tokenizer_soft_labels_align_every_character_and_reduce_the_loss():
    student, s_tok = tiny_model("tiny-llama", seed=0)
    teacher, t_tok = tiny_model("tiny-gemma", seed=3)  # another model and tokenizer object
    s_tok.padding_side = t_tok.padding_side = "right"
    soft = Teacher(teacher, t_tok, "<eos>")
    rows = tokenize_examples(s_tok, _examples(2), "<eos>", 64, soft)
    assert rows[0]["s_sel"] == rows[0]["t_sel"] == list(range(len("00, 3") + 1))
    settings = FinetuneConfig(objective="distill", distill_vocab="numbers", epochs=8, lr=3e-2,
                                batch_size=4, micro_batch_size=4, warmup_steps=1)  # fmt: skip
    res = finetune(student, s_tok, _examples(), settings, end="<eos>", teacher=soft, progress=False)
    assert res.log["loss"][-1] < 0.5 * res.log["loss"][0]


def test_full_vocabulary_soft_labels_across_tokenizers_are_refused():
    student, s_tok = tiny_model("tiny-llama", seed=0)
    teacher, t_tok = tiny_model("tiny-gemma", seed=3)
    settings = FinetuneConfig(objective="distill", distill_vocab="full", epochs=1, batch_size=4, micro_batch_size=4)
    with pytest.raises(ValueError, match="distill_vocab = 'numbers'"):
        finetune(student, s_tok, _examples(), settings, end="<eos>", teacher=Teacher(teacher, t_tok, "<eos>"), progress=False)


def test_full_finetune_keeps_float32_master_weights_for_bf16_models():
    model, tok = tiny_model("tiny-llama", seed=0)
    model = model.to(torch.bfloat16)
    tok.padding_side = "right"
    settings = FinetuneConfig(method="full", epochs=1, lr=1e-6, batch_size=4, micro_batch_size=4, warmup_steps=0)
    res = finetune(copy.deepcopy(model), tok, _examples(4), settings, end="<eos>", progress=False)
    assert next(res.model.parameters()).dtype == torch.float32
    # lr 1e-6 updates are far below bf16 resolution; in float32 they survive
    assert any(float(d.abs().max()) > 0 for _, d in res.delta.items())


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
@pytest.mark.parametrize(("objective", "vocab", "cross"), [
    ("sft", "full", False), ("distill", "full", False), ("distill", "numbers", False), ("distill", "numbers", True),
])  # fmt: skip
def test_chunked_loss_equals_the_whole_loss_and_its_gradient(kind, objective, vocab, cross):
    # past `max_logits` the loss runs over chunks of positions with the head recomputed in the
    # backward pass: the same loss and the same gradient as one whole [positions, vocab] tensor
    student, tok = tiny_model(kind, seed=1)
    teacher = None
    if objective == "distill":
        t_model, t_tok = tiny_model("tiny-gemma" if kind == "tiny-llama" else "tiny-llama", seed=2) if cross \
            else (tiny_model(kind, seed=2)[0], None)  # fmt: skip
        teacher = Teacher(t_model, t_tok, "<eos>" if cross else "")
    settings = FinetuneConfig(objective=objective, distill_vocab=vocab)
    rows = tokenize_examples(tok, _examples(3), "<eos>", 64, teacher)
    results = []
    for max_logits in (2**40, 7):  # whole; chunks of 7 // vocab -> one position at a time
        obj = Objective.build(tok, settings, teacher, torch.device("cpu"))
        obj.max_logits = max_logits
        student.zero_grad(set_to_none=True)
        loss = obj.loss(student, rows)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}))
    (whole, g_whole), (chunked, g_chunked) = results
    assert whole > 0
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    assert g_whole.keys() == g_chunked.keys() and g_whole
    for n in g_whole:
        torch.testing.assert_close(g_chunked[n], g_whole[n], rtol=1e-4, atol=1e-6)
