"""Gradient projection off the trait direction: a training-time defence (issue 30, item 4).

Before training, `answer_shift` reads the direction the teacher moves the residual stream in on
the student's own training rows: per block l, v_l = mean over the rows' answer tokens of
resid_post(teacher) - resid_post(base), the teacher with its own prompt (a prompted teacher: the
base under the target's system prompt; a finetuned or steered one: its weights) and the base
with the student's prompt, i.e. exactly the inputs the student trains on.

While `project_gradients` is active, each decoder block's output registers a backward hook that
removes from the gradient reaching it the component along that block's unit direction u_l, at
every position: g <- g - (g . u_l) u_l. Every trainable weight sits in some block and reaches
the loss only through the residual stream after it, so no weight receives the part of the
loss gradient that flows back through resid_post along u_l. What it does not promise: a step
taken on the projected gradient may still move the activations along u_l (the update's effect
on resid_post is J J^T P g, not P g); how much it blocks is measured, not assumed
(tests/unit/test_grad_project.py).

Stacked students (`interp.lm.stacked`: K equal blocks of rows, block k for student k) each get
their own directions: `directions` is [student, layer, d_model].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from interp.lm.record import answer_activations
from interp.lm.settings import Example, FinetuneConfig
from interp.lm.steer import _split, decoder_layers

ROWS_PER_READ = 64  # rows recorded at a time (their [token, layer, d_model] activations are held on CPU)
DIRECTIONS_FILE = "directions.safetensors"


def save_directions(path: Path, v: Float[Tensor, "layer d_model"]) -> None:
    save_file({"directions": v.float().contiguous()}, str(path))


def load_directions(path: Path) -> Float[Tensor, "layer d_model"]:
    return load_file(str(path))["directions"]


@torch.no_grad()
def answer_shift(
    teacher: Any, base: Any, tok: Any, examples: Sequence[Example], end: str = "", *, batch_size: int = 16
) -> tuple[Float[Tensor, "layer d_model"], dict[str, Any]]:
    """v_l: mean over every answer token of the examples of resid_post(teacher) - resid_post(base),
    the teacher reading `teacher_prompt` + completion, the base `prompt` + completion (teacher
    and base share `tok`: one base model). Returns v and its facts (norms per layer, the base's
    mean residual norm per layer for scale, rows and tokens read)."""
    if not examples:
        raise ValueError("answer_shift needs at least one example")
    answers = [e.completion + end for e in examples]
    total: Tensor | None = None
    base_norm: Tensor | None = None
    n_tokens = 0
    for a in range(0, len(examples), ROWS_PER_READ):
        chunk = examples[a : a + ROWS_PER_READ]
        ans = answers[a : a + ROWS_PER_READ]
        t = answer_activations(teacher, tok, [e.teacher_prompt or e.prompt for e in chunk], ans,
                               reduce="none", batch_size=batch_size)  # fmt: skip
        b = answer_activations(base, tok, [e.prompt for e in chunk], ans, reduce="none", batch_size=batch_size)
        diff = sum((ti.double() - bi.double()).sum(0) for ti, bi in zip(t, b))
        norms = sum(bi.double().norm(dim=-1).sum(0) for bi in b)
        total = diff if total is None else total + diff
        base_norm = norms if base_norm is None else base_norm + norms
        n_tokens += sum(len(bi) for bi in b)
    v = (total / n_tokens).float()
    info = {"norm_by_layer": v.norm(dim=-1).tolist(), "resid_norm_by_layer": (base_norm / n_tokens).tolist(),
            "n_rows": len(examples), "n_tokens": n_tokens}  # fmt: skip
    return v, info


def unit_directions(directions: Float[Tensor, "student layer d_model"]) -> Float[Tensor, "student layer d_model"]:
    """Each direction scaled to norm 1; a zero direction stays zero (nothing projected at that block)."""
    d = directions.detach().float()
    if not torch.isfinite(d).all():
        raise ValueError("gradient-projection directions have non-finite entries")
    norm = d.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, d / norm.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(d))


class GradMeter:
    """How much of the activation gradient the projection removes: per optimiser step and
    student, the mean over projected blocks of |removed| / |gradient| (norms over every
    position of the step's rows)."""

    def __init__(self, n_students: int, layers: list[int]):
        self.layers = layers
        self._shape = (n_students, len(layers))
        self._removed: Tensor | None = None  # on the gradients' device: no host sync in a step
        self._total: Tensor | None = None
        self.per_step: list[Tensor] = []  # [student, layer] fractions, one per step
        self._index = {layer: i for i, layer in enumerate(layers)}

    def add(self, layer: int, removed_sq: Tensor, total_sq: Tensor) -> None:
        if self._removed is None:
            self._removed = torch.zeros(self._shape, dtype=torch.float64, device=removed_sq.device)
            self._total = torch.zeros_like(self._removed)
        i = self._index[layer]
        self._removed[:, i] += removed_sq.detach().double()
        self._total[:, i] += total_sq.detach().double()

    def reset(self) -> None:
        """Forget the current step's sums (a step retried after running out of memory)."""
        self._removed = self._total = None

    def end_step(self) -> None:
        if self._removed is None:  # no gradient reached a projected block this step
            self.per_step.append(torch.zeros(self._shape, dtype=torch.float64))
        else:
            frac = (self._removed / self._total.clamp_min(1e-300)).sqrt()
            self.per_step.append(torch.where(self._total > 0, frac, torch.zeros_like(frac)))
        self.reset()

    def log(self, student: int = 0) -> dict[str, Any]:
        """For a training log: the layer-mean fraction per step and the step-mean per layer."""
        if not self.per_step:
            return {"grad_removed": [], "grad_removed_by_layer": {}}
        f = torch.stack([s[student].cpu() for s in self.per_step])  # [step, layer]
        return {"grad_removed": f.mean(1).tolist(),
                "grad_removed_by_layer": {str(layer): float(f[:, i].mean()) for i, layer in enumerate(self.layers)}}  # fmt: skip


@contextmanager
def project_gradients(model: Any, directions: Float[Tensor, "student layer d_model"]) -> Iterator[GradMeter]:
    """While active, the gradient reaching each block's output loses its component along that
    block's unit direction, at every position (student k's directions on block k of a stacked
    batch); blocks whose directions are all zero are left alone. Yields the meter."""
    blocks = decoder_layers(model)
    if directions.ndim != 3 or directions.shape[1] != len(blocks):
        raise ValueError(f"directions must be [student, layer={len(blocks)}, d_model]; got {tuple(directions.shape)}")
    units = unit_directions(directions)
    layers = [i for i in range(len(blocks)) if units[:, i].abs().sum() > 0]
    meter = GradMeter(units.shape[0], layers)
    handles = [blocks[i].register_forward_hook(_forward_hook(units[:, i], i, meter)) for i in layers]
    try:
        yield meter
    finally:
        for h in handles:
            h.remove()


def projected(model: Any, settings: FinetuneConfig, project: list[Tensor | None]) -> Any:
    """The training loop's context: gradient projection off each student's directions
    ([layer, d_model] each) when `settings.grad_project` is on, else nothing (yields None)."""
    given = [p is not None for p in project]
    if settings.grad_project == "none":
        if any(given):
            raise ValueError("directions to project the gradient off were given, but grad_project is 'none'")
        return contextlib.nullcontext(None)
    if not all(given):
        raise ValueError(f"grad_project = '{settings.grad_project}' needs each student's directions (project=)")
    return project_gradients(model, torch.stack([p.float() for p in project]))


def _forward_hook(u: Float[Tensor, "student d_model"], layer: int, meter: GradMeter) -> Any:
    k = u.shape[0]

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        hidden, _ = _split(output)
        if not hidden.requires_grad:  # a forward without a graph (a teacher, the KL reference)
            return
        if hidden.shape[0] % k:
            raise ValueError(f"a projected batch of {k} students needs {k} equal blocks of rows; got {hidden.shape[0]}")
        uk = u.to(hidden.device)

        def project(g: Tensor) -> Tensor:
            gf = g.float().reshape(k, -1, g.shape[-1])  # [student, row x pos, d_model]
            c = torch.einsum("knd,kd->kn", gf, uk)
            meter.add(layer, (c * c).sum(1), (gf * gf).sum((1, 2)))
            return (gf - c[..., None] * uk[:, None, :]).reshape(g.shape).to(g.dtype)

        hidden.register_hook(project)

    return hook
