"""K LoRA students of one base in one batched forward: stacked adapters.

Every targeted `nn.Linear` of the base becomes a `StackedLoRA`: the frozen base layer plus, for
each of K students, its own factors A [K, r, d_in] and B [K, d_out, r]. A batch holds K equal
blocks of rows, block k for student k, so a step is one large matmul stream through the base
(shared by all students) and two batched matmuls per adapter (`torch.bmm` over the K blocks).
Students never mix: block k's rows see only adapter k, and adapter k's gradient comes only
from block k's loss, so K students train exactly as K separate runs would (AdamW, SGD and
SignSGD are elementwise; gradient clipping is done per student).

Student k starts from the same A that peft would draw for its seed (`peft_lora_init`), so a
stacked student and a peft-trained one with the same seed, data and settings agree to float
tolerance (tests/unit/test_stacked.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from interp.lm.delta import Delta


class StackedLoRA(nn.Module):
    """A frozen linear layer with K low-rank updates, one per block of the batch."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, scaling: float):
        super().__init__()
        self.base = base
        k, r, d_in = a.shape
        self.lora_A = nn.Parameter(a.to(base.weight.device, torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(k, base.out_features, r, device=base.weight.device))
        self.scaling = scaling
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        k = self.lora_A.shape[0]
        if x.shape[0] % k:
            raise ValueError(
                f"a stacked-adapter batch needs {k} equal blocks of rows; got {x.shape[0]} rows"
            )
        xs = x.reshape(k, -1, x.shape[-1])
        if not torch.is_autocast_enabled(x.device.type):  # under autocast bmm casts both sides itself
            xs = xs.to(self.lora_A.dtype)  # (a cast here would keep one more copy of x for backward)
        h = torch.bmm(xs, self.lora_A.transpose(1, 2))
        if self.scaling != 1.0:  # on the r-wide h, not the d_out-wide update: the same product,
            h = h * self.scaling  # a kernel 70-190x smaller (alpha = r, the default, skips it)
        d = torch.bmm(h, self.lora_B.transpose(1, 2))
        return y + d.reshape(y.shape).to(y.dtype)


def peft_lora_init(shapes: Sequence[tuple[int, int]], r: int, seed: int) -> list[torch.Tensor]:
    """The A matrices [r, d_in] that peft's `get_peft_model` draws after `torch.manual_seed(seed)`
    for LoRA layers of (d_in, d_out) `shapes`, in module order.

    peft builds each adapter as `nn.Linear(d_in, r)` and `nn.Linear(r, d_out)` (each drawn by
    nn.Linear's own kaiming-uniform init, on the CPU generator), then redraws A with
    kaiming-uniform(a=sqrt(5)) and zeroes B; the same draws in the same order give the same A."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for d_in, d_out in shapes:
        for shape in ((r, d_in), (d_out, r)):  # the two nn.Linear constructions
            _kaiming(torch.empty(shape), gen)
        out.append(_kaiming(torch.empty(r, d_in), gen))
    return out


def _kaiming(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`nn.init.kaiming_uniform_(w, a=sqrt(5))` drawn from `gen`."""
    fan_in = w.shape[1]
    gain = math.sqrt(2.0 / (1 + 5.0))
    bound = gain * math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=gen)


class Stacked:
    """The K students' adapters attached to one base model (`attach`); `detach` restores it."""

    def __init__(
        self, model: Any, modules: dict[str, StackedLoRA], originals: dict[str, nn.Linear]
    ):
        self.model = model
        self.modules = modules
        self._originals = originals

    @property
    def k(self) -> int:
        return next(iter(self.modules.values())).lora_A.shape[0]

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules.values() for p in (m.lora_A, m.lora_B)]

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each student's gradient to `max_norm` (its own total norm, as
        `torch.nn.utils.clip_grad_norm_` would over that student's parameters); returns the K norms."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(self.k)
        sq = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads]).sum(
            0
        )  # [K], no host sync
        norms = sq.sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
        return norms

    def delta(self, k: int) -> Delta:
        """Student k's update as LoRA factors keyed by the base's parameter names (`lora_factors`' format)."""
        out = Delta()
        for name, m in self.modules.items():
            a = m.lora_A[k].detach().float().cpu().contiguous()
            b = (m.lora_B[k].detach().float() * m.scaling).cpu().contiguous()
            out.factors[name + ".weight"] = (a, b)
        return out

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The bare base model (every adapter off), e.g. for a reference forward."""
        for m in self.modules.values():
            m.enabled = False
        try:
            yield
        finally:
            for m in self.modules.values():
                m.enabled = True

    def detach(self) -> Any:
        """Put the original layers back; returns the (unchanged) base model."""
        for name, lin in self._originals.items():
            parent, child = _parent(self.model, name)
            setattr(parent, child, lin)
        self.modules.clear()
        return self.model


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    head, _, child = name.rpartition(".")
    return (model.get_submodule(head) if head else model), child


def attach(
    model: Any, weights: Sequence[str], seeds: Sequence[int], r: int, alpha: float
) -> Stacked:
    """Give `model` one LoRA adapter per seed on the linear layers owning `weights` (parameter
    names ending in `.weight`, in module order), each initialised as peft would for that seed.
    The base's own parameters are frozen."""
    names = [w.removesuffix(".weight") for w in weights]
    layers = [model.get_submodule(n) for n in names]
    bad = [n for n, m in zip(names, layers) if not isinstance(m, nn.Linear)]
    if bad:
        raise ValueError(f"stacked LoRA adapts nn.Linear layers only; not: {bad[:3]}")
    shapes = [(m.in_features, m.out_features) for m in layers]
    per_seed = [peft_lora_init(shapes, r, s) for s in seeds]
    for p in model.parameters():
        p.requires_grad_(False)
    modules, originals = {}, {}
    for i, (name, lin) in enumerate(zip(names, layers)):
        a = torch.stack([inits[i] for inits in per_seed])
        modules[name] = StackedLoRA(lin, a, alpha / r)
        originals[name] = lin
        parent, child = _parent(model, name)
        setattr(parent, child, modules[name])
    return Stacked(model, modules, originals)


def stack_deltas(model: Any, deltas: Sequence[Delta]) -> Stacked:
    """`model` with one adapter per delta (each LoRA factors only, over the same weights and
    rank), for evaluating K finetuned students in one pass; block k of a batch is deltas[k]."""
    names = deltas[0].names()
    for d in deltas:
        if d.dense_parts or d.names() != names:
            raise ValueError("stacked deltas must all be LoRA factors of the same weights")
    a = [torch.stack([d.factors[n][0] for d in deltas]) for n in names]
    if len({t.shape[1] for t in a}) != 1:
        raise ValueError("stacked deltas must share one LoRA rank")
    for p in model.parameters():
        p.requires_grad_(False)
    modules, originals = {}, {}
    for n, an in zip(names, a):
        name = n.removesuffix(".weight")
        lin = model.get_submodule(name)
        modules[name] = StackedLoRA(lin, an, 1.0)  # B already carries the adapter's scale
        with torch.no_grad():
            modules[name].lora_B.copy_(torch.stack([d.factors[n][1] for d in deltas]))
        modules[name].requires_grad_(False)
        originals[name] = lin
        parent, child = _parent(model, name)
        setattr(parent, child, modules[name])
    return Stacked(model, modules, originals)


def stackable(delta: Delta) -> tuple | None:
    """What deltas must share to be stacked (`stack_deltas`): their weights and rank; None if
    this one cannot be (dense parts: a full finetune)."""
    if delta.dense_parts or not delta.factors:
        return None
    return (tuple(delta.names()), next(iter(delta.factors.values()))[0].shape[0])
