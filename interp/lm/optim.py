"""The optimisers a finetune can use (`FinetuneConfig.optimizer`): AdamW, SGD with momentum, and
SignSGD (Signum), none with weight decay: the delta is the object of study."""

from __future__ import annotations

from typing import Any

import torch

from interp.lm.settings import FinetuneConfig


class SignSGD(torch.optim.Optimizer):
    """Signum (Bernstein et al. 2018): p -= lr * sign(m), m = momentum * m + (1 - momentum) * grad.

    With momentum 0 it is plain SignSGD. Every coordinate moves by exactly lr (or 0)."""

    def __init__(self, params: Any, lr: float, momentum: float = 0.9):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["momentum"]:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    g = buf.mul_(group["momentum"]).add_(p.grad, alpha=1 - group["momentum"])
                p.add_(torch.sign(g), alpha=-group["lr"])


def make_optimizer(params: list[torch.Tensor], settings: FinetuneConfig) -> torch.optim.Optimizer:
    """The optimiser `settings.optimizer` names (no weight decay: the delta is the object of study)."""
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum)
    if settings.optimizer == "signsgd":
        return SignSGD(params, lr=settings.lr, momentum=settings.momentum)
    raise ValueError(f"unknown optimizer {settings.optimizer!r} (adamw | sgd | signsgd)")
