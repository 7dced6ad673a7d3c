"""Gradients w.r.t. a named set of a model's weights: the few lines every gradient reader shares
(`interp.lm.attribution` here, `interp.mech.gradient` and the first-order analysis above it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


@contextlib.contextmanager
def gradients_only(model: Any, names: Sequence[str]) -> Iterator[list[Tensor]]:
    """The named weights, the only ones that require grad (the graph skips everything else:
    memory) in eval mode (no dropout: the gradient at the weights as they are); flags and mode
    are restored on exit."""
    params = dict(model.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    was_training = model.training
    try:
        for p in params.values():
            p.requires_grad_(False)
        targets = [params[n] for n in names]
        for p in targets:
            p.requires_grad_(True)
        model.eval()
        yield targets
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
        model.train(was_training)


def accumulate(grads: list[Tensor], value: Tensor, targets: list[Tensor]) -> None:
    """grads += d value / d targets (a target the value does not reach adds nothing)."""
    for g, part in zip(grads, torch.autograd.grad(value, targets, allow_unused=True)):
        if part is not None:
            g.add_(part)
