"""LoRA deltas stored as factors: exact geometry without dense matrices, and base + delta = merged model."""

from __future__ import annotations

import torch

from interp.lm.delta import Delta, lora_factors
from interp.lm.finetune import Example, FinetuneConfig, finetune
from interp.lm.models import tiny_model


def _random_factored(seed: int, shapes: dict[str, tuple[int, int]], r: int = 4) -> Delta:
    g = torch.Generator().manual_seed(seed)
    return Delta(factors={n: (torch.randn(r, i, generator=g), torch.randn(o, r, generator=g)) for n, (o, i) in shapes.items()})


def test_factor_inner_products_equal_the_dense_ones():
    shapes = {"a.weight": (12, 7), "b.weight": (5, 9)}
    d1, d2 = _random_factored(0, shapes), _random_factored(1, shapes)
    for n in shapes:
        (a1, b1), (a2, b2) = d1.factors[n], d2.factors[n]
        dense = float(((b1.double() @ a1.double()) * (b2.double() @ a2.double())).sum())
        assert abs(d1.inner(d2, n) - dense) <= 1e-9 * max(1.0, abs(dense))
        assert d1.sq_norm(n) > 0


def test_save_and_load_round_trip_keeps_dense_and_factored_parts(tmp_path):
    d = _random_factored(2, {"x.weight": (6, 4)})
    d.dense_parts["y.weight"] = torch.randn(3, 3)
    d.save(tmp_path / "delta.safetensors")
    back = Delta.load(tmp_path / "delta.safetensors")
    assert back.names() == ["x.weight", "y.weight"]
    assert torch.equal(back.dense("x.weight"), d.dense("x.weight"))
    assert torch.equal(back.dense("y.weight"), d.dense("y.weight"))


def test_base_plus_saved_factors_equals_the_trained_lora_model(tmp_path):
    model, tok = tiny_model("tiny-llama", seed=0)
    base, _ = tiny_model("tiny-llama", seed=0)
    tok.padding_side = "right"
    ex = [Example("<user>count<eos>\n<assistant>", f"{i}, {i + 1}") for i in range(8)]
    settings = FinetuneConfig(epochs=2, lr=5e-2, batch_size=4, micro_batch_size=2, warmup_steps=1)
    res = finetune(model, tok, ex, settings, end="<eos>", progress=False)
    res.delta.save(tmp_path / "delta.safetensors")
    assert len(res.delta.factors) == 2 * 7 and not res.delta.dense_parts
    rebuilt = Delta.load(tmp_path / "delta.safetensors").apply(base)
    ids = torch.tensor([tok("<user>count<eos>\n<assistant>1, 2")["input_ids"]])
    with torch.no_grad():
        want = res.model(input_ids=ids).logits
        got = rebuilt(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-5)
    assert lora_factors(res.model).names() == res.delta.names()
