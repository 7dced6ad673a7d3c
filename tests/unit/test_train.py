"""Finetuning invariants on tiny models: merged LoRA = base + saved delta, loss masking, objectives."""

from __future__ import annotations

import copy

import pytest
import torch

from interp.lm.delta import Delta
from interp.lm.finetune import Example, FinetuneConfig, finetune, tokenize_examples
from interp.lm.loss import Teacher
from interp.lm.models import format_prompt, tiny_model

SETTINGS = FinetuneConfig(epochs=2, lr=5e-2, warmup_steps=1, batch_size=4, micro_batch_size=2)


def _examples(tok, n=6, system=None):
    return [
        Example(
            format_prompt(tok, f"list {i}"),
            f"{i}1, {i}2, {i}3",
            format_prompt(tok, f"list {i}", system),
        )
        for i in range(n)
    ]


def _logits(model, tok, text="<user>hello 123<eos>\n<assistant>4, 5"):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_lora_equals_base_plus_saved_delta(tmp_path):
    model, tok = tiny_model("tiny-llama", seed=1)
    base = copy.deepcopy(model)
    result = finetune(
        model, tok, _examples(tok), SETTINGS, seed=0, end=tok.eos_token, progress=False
    )
    assert result.log["delta_tensors"] == 2 * 7  # 2 layers x 7 target modules
    result.delta.save(tmp_path / "delta.safetensors")
    merged = result.model.merge_and_unload()
    rebuilt = Delta.load(tmp_path / "delta.safetensors").apply(base)
    a, b = _logits(merged, tok), _logits(rebuilt, tok)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert (
        a - _logits(tiny_model("tiny-llama", seed=1)[0], tok)
    ).abs().max() > 1e-3  # it did train


def test_only_targeted_tensors_change_and_base_is_untouched():
    model, tok = tiny_model("tiny-llama", seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, tok, _examples(tok), SETTINGS, seed=0, progress=False)
    names = set(result.delta.names())
    assert all(any(m in n for m in SETTINGS.target_modules) for n in names)
    assert all(d.abs().max() > 0 for _, d in result.delta.items())
    base_weights = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in result.model.state_dict().items() if "lora_" not in k}  # fmt: skip
    for k, v in before.items():
        if k in base_weights:
            assert torch.equal(base_weights[k], v), f"LoRA changed a frozen base weight {k}"


def test_full_finetune_delta_and_zero_lr():
    model, tok = tiny_model("tiny-llama", seed=3)
    base = copy.deepcopy(model)
    s = FinetuneConfig(
        method="full", epochs=1, lr=1e-3, warmup_steps=1, batch_size=4, micro_batch_size=4
    )
    result = finetune(model, tok, _examples(tok), s, seed=0, progress=False)
    rebuilt = result.delta.apply(base)
    assert torch.allclose(_logits(result.model, tok), _logits(rebuilt, tok), atol=1e-5)
    model0, _ = tiny_model("tiny-llama", seed=3)
    s0 = FinetuneConfig(
        method="full", epochs=1, lr=0.0, warmup_steps=1, batch_size=4, micro_batch_size=4
    )
    zero = finetune(model0, tok, _examples(tok), s0, seed=0, progress=False)
    assert max(d.abs().max().item() for _, d in zero.delta.items()) == 0.0


def test_labels_cover_only_the_completion():
    _, tok = tiny_model("tiny-llama")
    rows = tokenize_examples(tok, _examples(tok, 2), end=tok.eos_token, max_len=500)
    for row, ex in zip(rows, _examples(tok, 2)):
        completion = tok.decode(row["input_ids"][row["n_prompt"] :])
        assert completion == ex.completion + tok.eos_token
        assert row["teacher_ids"][row["n_teacher_prompt"] :] == row["input_ids"][row["n_prompt"] :]


def test_distillation_moves_student_toward_teacher():
    student, tok = tiny_model("tiny-llama", seed=4)
    teacher, _ = tiny_model("tiny-llama", seed=5)  # a different network: a large KL to close
    exs = _examples(tok, 8, system="You love owls.")
    s = FinetuneConfig(
        objective="distill", epochs=4, lr=1e-2, warmup_steps=1, batch_size=4, micro_batch_size=4
    )
    result = finetune(student, tok, exs, s, seed=0, teacher=Teacher(teacher), progress=False)
    assert result.log["loss"][-1] < result.log["loss"][0]
    s_sub = FinetuneConfig(
        objective="distill", distill_vocab="numbers", epochs=1, lr=1e-2, warmup_steps=1,
        batch_size=4, micro_batch_size=4,
    )  # fmt: skip
    sub = finetune(tiny_model("tiny-llama", seed=4)[0], tok, exs, s_sub, teacher=Teacher(teacher), progress=False)
    assert sub.log["steps"] == 2


def test_a_single_step_with_warmup_trains_at_a_nonzero_lr():
    # the quickstart trains students for one step with warmup_steps = 1: the unshifted
    # transformers schedule would run that step at lr 0 and leave a zero delta.
    model, tok = tiny_model("tiny-llama", seed=4)
    s = FinetuneConfig(epochs=1, lr=1e-2, warmup_steps=1, batch_size=4, micro_batch_size=4)
    result = finetune(model, tok, _examples(tok, 4), s, seed=0, progress=False)
    assert result.log["steps"] == 1
    assert result.log["lr"][0] == pytest.approx(1e-2)
    assert sum(result.delta.sq_norm(n) for n in result.delta) > 0


def test_distill_without_teacher_is_an_error():
    model, tok = tiny_model("tiny-llama")
    with pytest.raises(ValueError, match="needs a teacher"):
        finetune(model, tok, _examples(tok), FinetuneConfig(objective="distill"), progress=False)


# ---------------------------------------------------------------- optimiser and layer factors


@pytest.mark.parametrize("name,cls", [("adamw", "AdamW"), ("sgd", "SGD"), ("signsgd", "SignSGD")])
def test_the_optimizer_setting_picks_the_optimizer(name, cls):
    from interp.lm.optim import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = make_optimizer(p, FinetuneConfig(optimizer=name, momentum=0.5, lr=0.1))
    assert type(opt).__name__ == cls and opt.param_groups[0]["lr"] == 0.1
    if name != "adamw":
        assert opt.param_groups[0]["momentum"] == 0.5


def test_signsgd_moves_every_trained_weight_by_exactly_the_lr():
    model, tok = tiny_model("tiny-llama", seed=3)
    st = FinetuneConfig(method="full", optimizer="signsgd", momentum=0.0, lr=1e-3, warmup_steps=0,
                        epochs=1, batch_size=4, micro_batch_size=4, max_grad_norm=1e9)  # fmt: skip
    res = finetune(model, tok, _examples(tok, n=4), st, seed=0, progress=False)
    lr = res.log["lr"][0]
    assert res.log["steps"] == 1 and 0 < lr <= 1e-3
    moved = torch.cat([d.flatten() for _, d in res.delta.items()]).abs()
    # each coordinate moves by lr (its gradient's sign) or stays (a zero gradient)
    assert torch.all(((moved - lr).abs() < 1e-6) | (moved < 1e-9)), moved.unique()
    assert (moved > 0).float().mean() > 0.5


def test_sgd_and_adamw_give_different_updates():
    deltas = {}
    for name in ("sgd", "adamw"):
        model, tok = tiny_model("tiny-llama", seed=4)
        st = FinetuneConfig(optimizer=name, lr=1e-2, epochs=1, batch_size=2, micro_batch_size=2)
        deltas[name] = finetune(model, tok, _examples(tok, n=4), st, seed=0, progress=False).delta
    a, b = (torch.cat([d.flatten() for _, d in deltas[k].items()]) for k in ("sgd", "adamw"))
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_single_layer_setting_trains_only_that_block(method):
    model, tok = tiny_model("tiny-llama", seed=5)
    st = FinetuneConfig(method=method, layers=[1], lr=1e-2, epochs=1, batch_size=2, micro_batch_size=2)
    res = finetune(model, tok, _examples(tok, n=4), st, seed=0, progress=False)
    names = list(res.delta.names())
    assert names and all(".layers.1." in n for n in names), names
    assert any(d.abs().max() > 0 for _, d in res.delta.items())


def test_a_layer_beyond_the_model_is_one_clear_error():
    model, tok = tiny_model("tiny-llama", seed=6)
    with pytest.raises(ValueError, match=r"layers \[7\] out of range: the model has 2 decoder blocks"):
        finetune(model, tok, _examples(tok, n=2), FinetuneConfig(layers=[7]), seed=0, progress=False)


def test_a_student_entry_overrides_the_optimizer_and_layers():
    from interp.subliminal.config import StudentConfig, TrainConfig

    train = TrainConfig(lr=3e-4)
    st = StudentConfig("sgd-layer0", optimizer="sgd", momentum=0.0, layers=[0]).settings(train)
    assert (st.optimizer, st.momentum, st.layers, st.lr) == ("sgd", 0.0, [0], 3e-4)
    assert StudentConfig("plain").settings(train).optimizer == "adamw"


def test_a_loss_mask_leaves_its_positions_out_of_the_loss():
    # every position excluded: no loss, no gradient, LoRA's B stays zero; a partial mask trains
    # on fewer tokens than no mask, and both objectives honour it.
    _, tok = tiny_model("tiny-llama")
    exs = _examples(tok, 4)
    n = [len(r["input_ids"]) - r["n_prompt"] for r in tokenize_examples(tok, exs, tok.eos_token, 500)]
    s = FinetuneConfig(epochs=1, lr=1e-2, warmup_steps=1, batch_size=4, micro_batch_size=2)
    full = [Example(e.prompt, e.completion, e.teacher_prompt, tuple(range(k))) for e, k in zip(exs, n)]
    res = finetune(tiny_model("tiny-llama", seed=4)[0], tok, full, s, seed=0, end=tok.eos_token, progress=False)
    assert res.log["loss_tokens"] == 0 and sum(res.delta.sq_norm(x) for x in res.delta) == 0
    part = [Example(e.prompt, e.completion, e.teacher_prompt, (0, 2)) for e in exs]
    for obj in ("sft", "distill"):
        st = FinetuneConfig(**{**s.__dict__, "objective": obj})
        teacher = Teacher(tiny_model("tiny-llama", seed=5)[0]) if obj == "distill" else None
        res = finetune(tiny_model("tiny-llama", seed=4)[0], tok, part, st, seed=0, end=tok.eos_token,
                       teacher=teacher, progress=False)  # fmt: skip
        assert res.log["loss_tokens"] == sum(n) - 2 * len(exs)
        assert sum(res.delta.sq_norm(x) for x in res.delta) > 0


@pytest.mark.parametrize("objective", ["sft", "distill"])
def test_micro_batches_give_the_one_batch_update(objective):
    # rows of unlike lengths: micro-batches (sorted by length within the batch) accumulate the
    # same summed loss, so one SGD step (proportional to the gradient) equals the one-micro-batch step
    _, tok = tiny_model("tiny-llama")
    exs = [Example(format_prompt(tok, f"q{i}" * (1 + 3 * i)), ", ".join(str(100 + j) for j in range(1 + 2 * i)))
           for i in range(6)]  # fmt: skip
    assert len({len(r["input_ids"]) for r in tokenize_examples(tok, exs, tok.eos_token, 500)}) == 6
    deltas = []
    for micro in (6, 2):
        st = FinetuneConfig(objective=objective, optimizer="sgd", epochs=1, lr=1e-1, warmup_steps=1, batch_size=6,
                            micro_batch_size=micro, max_grad_norm=1e9)  # fmt: skip
        teacher = Teacher(tiny_model("tiny-llama", seed=5)[0]) if objective == "distill" else None
        res = finetune(tiny_model("tiny-llama", seed=4)[0], tok, exs, st, seed=0, end=tok.eos_token,
                       teacher=teacher, progress=False)  # fmt: skip
        deltas.append(res.delta)
    for name in deltas[0]:
        torch.testing.assert_close(deltas[1].dense(name), deltas[0].dense(name), atol=1e-6, rtol=1e-4)
