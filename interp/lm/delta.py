"""Parameter deltas (student = base + delta), stored as LoRA factors where they are low rank.

A LoRA update of a d_out x d_in weight is B @ A with A [r, d_in] and B [d_out, r] (the
adapter's scale folded into B). Saving the factors instead of the merged matrices makes a
SmolLM2 student's delta ~2.4M numbers instead of ~106M, and inner products between two
low-rank deltas need no dense matrix at all:

    <B A, B' A'> = tr(A^T B^T B' A') = sum((B^T B') * (A A'^T)).

One file per delta, `delta.safetensors`: a key `<param>` holds a dense delta, the pair
`<param>::A` / `<param>::B` a factored one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")
# Suffixes that wrap the real module name (peft's base layer, parameter kinds).
_WRAPPERS = {"weight", "bias", "base_layer", "default"}


def parse_param_name(name: str) -> tuple[int | None, str]:
    """`model.layers.3.mlp.up_proj.weight` -> (3, "up_proj"); non-layer params get layer None.

    Works for Llama and Gemma-3 names (both `model.layers.{l}.self_attn.{q,k,v,o}_proj` and
    `model.layers.{l}.mlp.{gate,up,down}_proj`), and tolerates peft's `.base_layer` infix.
    """
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    parts = [p for p in name.split(".") if p not in _WRAPPERS]
    module = parts[-1] if parts else name
    return layer, module


_A, _B = "::A", "::B"


@dataclass
class Delta:
    """Per-parameter updates, each dense or as LoRA factors (A, B) with B @ A the update."""

    dense_parts: dict[str, torch.Tensor] = field(default_factory=dict)
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    # ------------------------------------------------------------ access
    def names(self) -> list[str]:
        return sorted([*self.dense_parts, *self.factors])

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.dense_parts) + len(self.factors)

    def __contains__(self, name: object) -> bool:
        return name in self.dense_parts or name in self.factors

    def dense(self, name: str) -> torch.Tensor:
        """The full update of one parameter (materialised from factors if needed)."""
        if name in self.dense_parts:
            return self.dense_parts[name]
        a, b = self.factors[name]
        return b @ a

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.dense_parts:
            return tuple(self.dense_parts[name].shape)
        a, b = self.factors[name]
        return (b.shape[0], a.shape[1])

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for n in self.names():
            yield n, self.dense(n)

    def to_dense(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    # ------------------------------------------------------------ geometry
    def inner(self, other: Delta, name: str) -> float:
        """<self[name], other[name]> (Frobenius), exact from factors when both are factored."""
        if name in self.factors and name in other.factors:
            a1, b1 = self.factors[name]
            a2, b2 = other.factors[name]
            return float(((b1.T.double() @ b2.double()) * (a1.double() @ a2.T.double())).sum())
        return float((self.dense(name).double() * other.dense(name).double()).sum())

    def sq_norm(self, name: str) -> float:
        return self.inner(self, name)

    # ------------------------------------------------------------ io
    def save(self, path: str | Path) -> None:
        tensors = {n: t.contiguous() for n, t in self.dense_parts.items()}
        for n, (a, b) in self.factors.items():
            tensors[n + _A], tensors[n + _B] = a.contiguous(), b.contiguous()
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path: str | Path) -> Delta:
        raw = load_file(str(path))
        out = cls()
        for key, t in raw.items():
            if key.endswith(_A):
                name = key[: -len(_A)]
                out.factors[name] = (t, raw[name + _B])
            elif not key.endswith(_B):
                out.dense_parts[key] = t
        return out

    # ------------------------------------------------------------ use
    def apply(self, model: Any, scale: float = 1.0) -> Any:
        """Add the delta to `model`'s parameters in place (student = base + delta)."""
        return apply_delta(model, self.to_dense(), scale)


def apply_delta(model: Any, delta: dict[str, torch.Tensor], scale: float = 1.0) -> Any:
    """Add dense per-parameter updates to a model in place (student = base + delta)."""
    params = dict(model.named_parameters())
    missing = [k for k in delta if k not in params]
    if missing:
        raise KeyError(f"delta names not in model: {missing[:3]} (of {len(missing)})")
    with torch.no_grad():
        for k, d in delta.items():
            params[k].add_(d.to(params[k].device, params[k].dtype), alpha=scale)
    return model


def lora_factors(model: Any, adapter: str = "default") -> Delta:
    """The LoRA factors of a peft model, keyed by the base model's parameter names."""
    out = Delta()
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if lora_a is None or adapter not in lora_a:
            continue
        scale = module.scaling[adapter]
        a = lora_a[adapter].weight.detach().float().cpu()
        b = lora_b[adapter].weight.detach().float().cpu() * scale
        if getattr(module, "fan_in_fan_out", False):  # weight stored transposed (GPT-2 Conv1D)
            a, b = b.T, a.T
        base_name = name.replace("base_model.model.", "", 1) + ".weight"
        out.factors[base_name] = (a.contiguous(), b.contiguous())
    return out


def full_delta(model: Any, base_state: dict[str, torch.Tensor]) -> Delta:
    """Dense updates of every trained parameter against a saved copy of the base."""
    return Delta(
        dense_parts={
            n: (p.detach().float().cpu() - base_state[n]).contiguous()
            for n, p in model.named_parameters()
            if p.requires_grad and n in base_state
        }
    )
