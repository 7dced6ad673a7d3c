"""Per-example attribution by the first-order alignment: how far each training row, on its own,
moves a score in the first gradient step.

At the student's initialisation theta_0, one step of size lr on its training loss L(D) (the mean
over the data's loss-carrying positions, `interp.lm.loss.Objective`, as `interp.lm.finetune`
normalises) changes a differentiable score f by -lr <grad L(D), grad f> + O(lr^2). With l_r row
r's summed loss and U the data's loss-carrying positions, L(D) = sum_r l_r / U, so

    -<grad L(D), grad f> = sum_r a_r,    a_r = -<grad l_r, grad f> / U:

a_r is row r's share of the first-order prediction (per unit lr), and the rows' scores add up to
the whole dataset's. f is a target's log-odds over candidates, the trait matrix's
(`interp.subliminal.matrix.log_odds`): log p(target) minus the mean log p of the other candidates,
mean over prompts. Gradients are w.r.t. the named weights (the ones the student trains,
`interp.lm.finetune.trained_weights`); grad f is taken once, then one backward per row, the rows
of a micro-batch sharing one forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.lm.finetune import Example, FinetuneConfig, tokenize_examples
from interp.lm.generate import encode_prompts
from interp.lm.gradients import accumulate, gradients_only
from interp.lm.loss import Objective, Teacher, completion_logits


def _grad_dtype(p: Tensor) -> torch.dtype:
    return torch.promote_types(p.dtype, torch.float32)


def log_odds_gradient(
    model: Any, tok: Any, prompts: Sequence[str], candidates: Sequence[str], target: str, names: Sequence[str],
    batch_size: int = 16,
) -> tuple[float, list[Tensor]]:  # fmt: skip
    """(f, grad f) for f = mean over `prompts` (formatted, answer prefix included) of
    log p(" " + target) - mean over the other candidates of log p(" " + c), each candidate scored
    on all its tokens as `interp.subliminal.evaluate` scores it. The gradient is one tensor per
    named weight, on the model's device, >= float32."""
    if target not in candidates or len(candidates) < 2:
        raise ValueError(f"the log-odds of {target!r} need it among >= 2 candidates, got {list(candidates)}")
    device = next(model.parameters()).device
    prompt_ids = encode_prompts(tok, list(prompts))
    k = len(candidates)
    value = 0.0
    with gradients_only(model, names) as targets:
        grads = [torch.zeros_like(p, dtype=_grad_dtype(p)) for p in targets]
        for c in candidates:
            # the log-odds is linear in the candidates' log-probs: +1 for the target, -1/(k-1) for the others
            weight = 1.0 if c == target else -1.0 / (k - 1)
            cid = tok(" " + c, add_special_tokens=False)["input_ids"]
            if not cid:
                raise ValueError(f"candidate {c!r} has no tokens")
            rows = [{"input_ids": p + cid, "n_prompt": len(p)} for p in prompt_ids]
            for i in range(0, len(rows), batch_size):
                logits, tgt = completion_logits(model, rows[i : i + batch_size], tok.pad_token_id, device)
                lp = torch.log_softmax(logits, dim=-1).gather(1, tgt[:, None]).sum() * (weight / len(rows))
                value += float(lp.detach())
                accumulate(grads, lp, targets)
    return value, grads


def row_inner_products(
    row_losses: Callable[[list], Tensor], rows: Sequence, params: Sequence[Tensor], direction: Sequence[Tensor],
    micro_batch_size: int, progress: bool = False,
) -> list[float]:  # fmt: skip
    """<grad l_r, direction> for every row r, where `row_losses(micro)` returns the [len(micro)]
    losses of a micro-batch of rows as a function of `params` (which require grad). One forward
    per micro-batch, one backward per row; a row whose loss does not reach `params` scores 0."""
    out = []
    bar = tqdm(total=len(rows), desc="first-order scores", unit="row", disable=not progress)
    for i in range(0, len(rows), micro_batch_size):
        micro = list(rows[i : i + micro_batch_size])
        losses = row_losses(micro)
        if losses.shape != (len(micro),):
            raise ValueError(f"row_losses gave shape {tuple(losses.shape)} for {len(micro)} rows")
        for j in range(len(micro)):
            if not losses.requires_grad:
                out.append(0.0)
                continue
            parts = torch.autograd.grad(losses[j], list(params), retain_graph=j < len(micro) - 1, allow_unused=True)
            out.append(float(sum((p.to(d.dtype) * d).sum().double() for p, d in zip(parts, direction) if p is not None)))
        del losses
        bar.update(len(micro))
    bar.close()
    return out


def first_order_scores(
    model: Any, tok: Any, examples: list[Example], names: Sequence[str], direction: Sequence[Tensor], end: str, *,
    settings: FinetuneConfig, teacher: Teacher | None = None, micro_batch_size: int | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:  # fmt: skip
    """Per example, its share of the first-order change of the score whose gradient (w.r.t. the
    named weights) is `direction`: {"contribution": a_r = -<grad l_r, direction> / U (the rows'
    contributions sum to -<grad L(D), direction>), "per_position": -<grad l_r, direction> / n_r
    (the row's own mean loss, length-free), "n_positions": n_r}. The loss is the student's own
    (`Objective` built from `settings`: hard labels, or KL to `teacher`'s soft labels; loss masks
    kept; the KL-to-base penalty has zero gradient at the initialisation and is left out)."""
    if not examples:
        raise ValueError("first_order_scores needs at least one example")
    device = next(model.parameters()).device
    distill = settings.objective == "distill"
    objective = Objective.build(tok, settings, teacher if distill else None, device)
    rows = tokenize_examples(tok, examples, end, settings.max_seq_len, teacher if distill else None)
    n_pos = [len(r["s_sel"]) for r in rows]
    units = max(1, sum(n_pos))
    with gradients_only(model, names) as targets:
        inner = row_inner_products(
            lambda micro: objective.block_losses(model, micro, blocks=len(micro)),
            rows, targets, [d.to(device) for d in direction], micro_batch_size or settings.micro_batch_size,
            progress,
        )  # fmt: skip
    return [{"contribution": -x / units, "per_position": -x / n if n else 0.0, "n_positions": n}
            for x, n in zip(inner, n_pos)]  # fmt: skip
