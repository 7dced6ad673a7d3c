"""The theorem on LLMs: does one imitation step on teacher data move the student toward the teacher?

At the student's initialisation theta_0 (the teacher's base weights), let g be the gradient of
the imitation loss on one batch of teacher outputs: the mean completion-token cross-entropy
with hard labels, exactly the SFT loss of `interp.lm.finetune` (labels only on completion tokens).
Let dT = theta_teacher - theta_0 be the teacher delta (the update that gave the teacher its
trait). A gradient-descent step moves the student by -lr * g, so

    cos(-g, dT) = <-g, dT> / (|g| |dT|)

is the alignment of the descent direction with the teacher delta.

Sign convention (everywhere in this module): POSITIVE = the descent step moves the student
TOWARD the teacher in parameter space. The theorem predicts <-g, dT> > 0 for a same-init
student and small enough teacher updates; a student from another initialisation has no
reason to. `inner` is the raw <-g, dT>; to first order, moving eps along dT changes the loss by
<g, eps dT> = -eps * inner (checked against finite differences in tests/unit/test_analysis.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.lm.delta import parse_param_name
from interp.lm.finetune import Example, FinetuneConfig, tokenize_examples
from interp.lm.gradients import accumulate, gradients_only
from interp.lm.loss import Objective, Teacher
from interp.mech.alignment import safe_cosine, shared_names
from interp.stats import bootstrap_ci

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
SIGN_CONVENTION = (
    "positive = the gradient-descent step on teacher data moves the student toward the "
    "teacher: cos(-grad, teacher_delta) > 0, inner = <-grad, teacher_delta>"
)


def _chunks(xs: list, size: int) -> Iterator[list]:
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def iter_imitation_gradients(
    model: Any,
    tok: Any,
    examples: list[Example],
    param_names: list[str],
    batch_size: int,
    end: str,
    *,
    micro_batch_size: int | None = None,
    max_len: int = 500,
    max_batches: int | None = None,
    settings: FinetuneConfig | None = None,
    teacher: Teacher | None = None,
) -> Iterator[dict[str, Tensor]]:
    """Per batch of teacher data, the imitation-loss gradient w.r.t. the named base parameters.

    Computed at the model's current weights (the student's init); the loss is the training loss
    of interp.lm.finetune (`Objective`), mean over the batch's loss-carrying positions: hard-label
    cross-entropy by default, KL to `teacher`'s soft labels when `settings.objective` is "distill".
    Only `param_names` get requires_grad during the call; flags, train/eval mode and weights
    are left as they were when the generator finishes or is closed. Each dict maps name ->
    gradient (CPU, >= float32) of that weight; one batch is in memory at a time (a SmolLM2
    gradient over the LoRA targets is ~400 MB), so feed it straight into `descent_alignment`.
    """
    if not examples:
        raise ValueError("imitation_gradients needs at least one example")
    params = dict(model.named_parameters())
    missing = [n for n in param_names if n not in params]
    if missing:
        raise KeyError(f"param names not in model: {missing[:3]} (of {len(missing)})")
    device = next(model.parameters()).device
    settings = settings or FinetuneConfig()
    distill = settings.objective == "distill"
    objective = Objective.build(tok, settings, teacher if distill else None, device)
    rows = tokenize_examples(tok, examples, end, max_len, teacher if distill else None)
    with gradients_only(model, param_names) as targets:
        for b, batch in enumerate(_chunks(rows, batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            n_units = max(1, sum(len(r["s_sel"]) for r in batch))
            grads = [
                torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
                for p in targets
            ]
            for micro in _chunks(batch, micro_batch_size or batch_size):
                loss = objective.loss(model, micro)
                # Mean over the batch's loss-carrying positions, as interp.lm.finetune normalises.
                accumulate(grads, loss / n_units, targets)
            yield {
                n: g.detach().to("cpu", torch.promote_types(g.dtype, torch.float32))
                for n, g in zip(param_names, grads)
            }


def default_groups(names: Iterable[str]) -> dict[str, Callable[[str], bool]]:
    """attention (q,k,v,o), mlp (gate,up,down) and one group per layer ("layer.{l}")."""
    groups: dict[str, Callable[[str], bool]] = {
        "attention": lambda n: parse_param_name(n)[1] in ATTENTION,
        "mlp": lambda n: parse_param_name(n)[1] in MLP,
    }
    layers = sorted({parse_param_name(n)[0] for n in names} - {None})
    for layer in layers:
        groups[f"layer.{layer}"] = lambda n, layer=layer: parse_param_name(n)[0] == layer
    return groups


def _summary(
    inner: list[float],
    cos: list[float],
    grad_norm: list[float],
    tnorm: float,
    n_boot: int,
    seed: int,
) -> dict:
    finite = [c for c in cos if math.isfinite(c)]
    return {
        "cos": cos,
        "inner": inner,
        "grad_norm": grad_norm,
        "teacher_norm": tnorm,
        "frac_positive": float(np.mean([c > 0 for c in finite])) if finite else float("nan"),
        "cos_ci": bootstrap_ci(finite, n_boot=n_boot, seed=seed).to_dict() if finite else None,
        "inner_ci": bootstrap_ci(inner, n_boot=n_boot, seed=seed).to_dict() if inner else None,
    }


def descent_alignment(
    grads: Iterable[dict[str, Tensor]],
    teacher_delta: dict[str, Tensor],
    groups: dict[str, Callable[[str], bool]] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    pooled: bool = True,
) -> dict:
    """Alignment of each batch's descent direction -g with the teacher delta dT.

    Sign convention: POSITIVE = the descent step moves the student toward the teacher.
    Over the names shared by the gradients and dT. `groups` maps a group name to a predicate
    on parameter names (default: `default_groups`). Returns a JSON-able dict:
    sign_convention, n_batches, n_tensors, overall and groups[name], each with
    cos [per batch] = cos(-g, dT), inner [per batch] = <-g, dT>, grad_norm [per batch],
    teacher_norm, frac_positive (share of batches with cos > 0), cos_ci and inner_ci
    (bootstrap over batches, Estimate.to_dict()), pooled_cos (cos(-mean g, dT): the
    direction of one full-data step; nan unless `pooled`); plus notes.
    """
    notes: list[str] = []
    names: list[str] | None = None
    member: dict[str, list[str]] = {}
    t_sq: dict[str, float] = {}
    rows: dict[str, dict[str, list[float]]] = {}
    g_sum: dict[str, Tensor] = {}
    n_batches = 0
    for grad in grads:
        shared = shared_names(grad, teacher_delta)
        if names is None:
            if not shared:
                raise ValueError("gradients and teacher delta share no parameter names")
            names = shared
            preds = groups if groups is not None else default_groups(names)
            member = {"overall": names} | {k: [n for n in names if f(n)] for k, f in preds.items()}
            for k, ns in member.items():
                if not ns:
                    notes.append(f"group {k}: no shared tensors")
            t_sq = {n: float(teacher_delta[n].double().pow(2).sum()) for n in names}
            rows = {k: {"inner": [], "cos": [], "grad_norm": []} for k in member}
        elif shared != names:
            raise ValueError("every batch's gradient must cover the same parameter names")
        n_batches += 1
        dots, g_sq = {}, {}
        for n in names:
            g = grad[n].detach().double()
            dots[n] = -float((g * teacher_delta[n].to(g.device).double()).sum())
            g_sq[n] = float(g.pow(2).sum())
            if pooled:
                g_sum[n] = g_sum[n] + g.cpu() if n in g_sum else g.cpu().clone()
        for k, ns in member.items():
            dot, gg, tt = (sum(d[n] for n in ns) for d in (dots, g_sq, t_sq))
            rows[k]["inner"].append(dot)
            rows[k]["grad_norm"].append(math.sqrt(gg))
            rows[k]["cos"].append(safe_cosine(dot, gg, tt, f"batch {n_batches - 1} {k}", notes))
    if names is None:
        raise ValueError("descent_alignment needs at least one gradient batch")
    out: dict[str, Any] = {
        "sign_convention": SIGN_CONVENTION,
        "n_batches": n_batches,
        "n_tensors": len(names),
        "groups": {},
        "notes": notes,
    }
    for k, ns in member.items():
        tnorm = math.sqrt(sum(t_sq[n] for n in ns))
        summary = _summary(**rows[k], tnorm=tnorm, n_boot=n_boot, seed=seed)
        summary["pooled_cos"] = float("nan")
        if pooled and ns:
            dot = -sum(float((g_sum[n] * teacher_delta[n].double().cpu()).sum()) for n in ns)
            gg = sum(float(g_sum[n].pow(2).sum()) for n in ns)
            summary["pooled_cos"] = safe_cosine(dot, gg, tnorm**2, f"pooled {k}", notes)
        if k == "overall":
            out["overall"] = summary
        else:
            out["groups"][k] = summary
    return out
