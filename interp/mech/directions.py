"""Trait directions in the residual stream (persona-vector style) and the student's shift.

Activations are `[n, layer, d_model]` tensors: one row per prompt, the residual stream at each
layer (e.g. the mean over response tokens). The quantities:

- trait direction = mean(trait-bearing acts) - mean(neutral acts), per layer (e.g. the teacher
  with vs. without its trait system prompt). It points FROM neutral TO trait.
- student shift = mean(student acts) - mean(base acts) on the same prompts (paired rows).
- cosine(direction, shift) per layer: positive = finetuning moved the student's activations
  toward the trait; ~0 = unrelated. A control student (trained on control data) gives the
  null: the same cosine with its own shift.
- projections onto the unit direction: positive = on the trait side of the origin.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.stats import cosine


def mean_difference(
    trait_acts: Float[Tensor, "n layer d_model"], neutral_acts: Float[Tensor, "m layer d_model"]
) -> Float[Tensor, "layer d_model"]:
    """Trait direction per layer: mean(trait) - mean(neutral) (points toward the trait)."""
    _check_acts(trait_acts, "trait_acts")
    _check_acts(neutral_acts, "neutral_acts")
    if trait_acts.shape[1:] != neutral_acts.shape[1:]:
        raise ValueError(
            f"trait and neutral acts differ in [layer, d_model]: "
            f"{tuple(trait_acts.shape[1:])} vs {tuple(neutral_acts.shape[1:])}"
        )
    return trait_acts.mean(0) - neutral_acts.mean(0)


def layer_cosines(
    a: Float[Tensor, "layer d_model"], b: Float[Tensor, "layer d_model"]
) -> Float[Tensor, " layer"]:
    """Cosine between a[l] and b[l] per layer; nan where either vector is zero (no direction)."""
    if a.shape != b.shape:
        raise ValueError(
            f"layer_cosines needs equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    return cosine(a, b)


def projections(
    acts: Float[Tensor, "n layer d_model"], direction: Float[Tensor, "layer d_model"]
) -> Float[Tensor, "n layer"]:
    """Scalar projection of each row onto the unit direction of its layer."""
    _check_acts(acts, "acts")
    if acts.shape[1:] != direction.shape:
        raise ValueError(
            f"acts [n, layer, d_model] {tuple(acts.shape)} do not match direction {tuple(direction.shape)}"
        )
    norm = direction.norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise ValueError(
            f"direction is zero at layers {torch.nonzero(norm.squeeze(-1) == 0).flatten().tolist()}"
        )
    return torch.einsum("nld,ld->nl", acts, (direction / norm).to(acts.dtype))


def separation(
    trait_acts: Float[Tensor, "n layer d_model"],
    neutral_acts: Float[Tensor, "m layer d_model"],
    direction: Float[Tensor, "layer d_model"] | None = None,
) -> Float[Tensor, " layer"]:
    """Standardised mean difference (Cohen's d) of the projections, trait minus neutral, per layer.

    With the default direction (the mean difference of these same acts) the score is
    in-sample and optimistic; pass a direction from held-out prompts for an unbiased choice.
    """
    direction = mean_difference(trait_acts, neutral_acts) if direction is None else direction
    pt, pn = (
        projections(trait_acts, direction).double(),
        projections(neutral_acts, direction).double(),
    )
    nt, nn = pt.shape[0], pn.shape[0]
    var_t = pt.var(0, unbiased=True) if nt > 1 else torch.zeros(pt.shape[1], dtype=pt.dtype)
    var_n = pn.var(0, unbiased=True) if nn > 1 else torch.zeros(pn.shape[1], dtype=pn.dtype)
    pooled = ((max(nt - 1, 0) * var_t + max(nn - 1, 0) * var_n) / max(nt + nn - 2, 1)).sqrt()
    diff = pt.mean(0) - pn.mean(0)
    return torch.where(pooled > 0, diff / pooled, torch.sign(diff) * float("inf"))


def best_layer(
    trait_acts: Float[Tensor, "n layer d_model"],
    neutral_acts: Float[Tensor, "m layer d_model"],
    direction: Float[Tensor, "layer d_model"] | None = None,
) -> tuple[int, Float[Tensor, " layer"]]:
    """The layer whose direction best separates trait from neutral acts, and every layer's score.

    Score = `separation` (Cohen's d of projections onto the direction); nan scores are skipped.
    """
    scores = separation(trait_acts, neutral_acts, direction)
    finite = torch.nan_to_num(scores, nan=-float("inf"))
    return int(torch.argmax(finite)), scores


def _check_acts(x: Tensor, label: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"{label} must be [n, layer, d_model], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{label} has no rows")


def _boot_means(x: Tensor, counts: Tensor) -> Tensor:
    """Bootstrap means [B, layer, d_model] from resample counts [B, n] (one matmul per chunk)."""
    n = x.shape[0]
    return (counts @ x.reshape(n, -1)).reshape(counts.shape[0], *x.shape[1:]) / n


def _counts(gen: torch.Generator, n_boot: int, n: int) -> Tensor:
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    return counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))


def _interval(samples: np.ndarray, ci: float) -> tuple[list[float], list[float]]:
    alpha = (1 - ci) / 2
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(samples, [alpha, 1 - alpha], axis=0)
    return lo.tolist(), hi.tolist()


def _check_paired(student_acts: Tensor, base_acts: Tensor, control_acts: Tensor | None, direction: Tensor) -> None:
    """Student, base and control rows are the same prompts, in the direction's [layer, d_model]."""
    for x, label in ((student_acts, "student_acts"), (base_acts, "base_acts")):
        _check_acts(x, label)
    if student_acts.shape != base_acts.shape:
        raise ValueError(
            f"student and base acts must be paired (same prompts): "
            f"{tuple(student_acts.shape)} vs {tuple(base_acts.shape)}"
        )
    if control_acts is not None and control_acts.shape != base_acts.shape:
        raise ValueError(
            f"control acts must be paired with base acts: {tuple(control_acts.shape)} vs {tuple(base_acts.shape)}"
        )
    if student_acts.shape[1:] != direction.shape:
        raise ValueError(
            f"student acts {tuple(student_acts.shape[1:])} and trait acts {tuple(direction.shape)} differ in [layer, d_model]"
        )


def direction_cosine_ci(
    trait_acts: Float[Tensor, "n layer d_model"],
    neutral_acts: Float[Tensor, "m layer d_model"],
    student_acts: Float[Tensor, "k layer d_model"],
    base_acts: Float[Tensor, "k layer d_model"],
    n_boot: int = 1000,
    seed: int = 0,
    control_acts: Float[Tensor, "k layer d_model"] | None = None,
    ci: float = 0.95,
    chunk: int = 128,
) -> dict:
    """Per layer, cos(trait direction, student shift) with a bootstrap CI over prompts.

    Each bootstrap draw resamples trait rows, neutral rows, and (paired: the same indices for
    both) student/base rows, and recomputes both means. `control_acts` (a control student on
    the base's prompts, paired) gives the null cosine on the same draws, and the paired
    difference student - control. Returns a JSON-able dict: layers, cosine, lo, hi,
    direction_norm, shift_norm, control (None or {cosine, lo, hi, shift_norm}),
    diff_vs_control (None or {mean, lo, hi}), n_trait, n_neutral, n_paired, n_boot, ci, seed.
    """
    direction = mean_difference(trait_acts, neutral_acts).double()
    _check_paired(student_acts, base_acts, control_acts, direction)
    t, n_ = trait_acts.double(), neutral_acts.double()
    base = base_acts.double()
    shift_s = student_acts.double() - base  # paired: resample prompt-level differences
    shift_c = control_acts.double() - base if control_acts is not None else None
    out = {
        "layers": list(range(direction.shape[0])),
        "cosine": layer_cosines(direction, shift_s.mean(0)).tolist(),
        "direction_norm": direction.norm(dim=-1).tolist(),
        "shift_norm": shift_s.mean(0).norm(dim=-1).tolist(),
        "n_trait": int(t.shape[0]),
        "n_neutral": int(n_.shape[0]),
        "n_paired": int(base.shape[0]),
        "n_boot": int(n_boot),
        "ci": ci,
        "seed": seed,
        "control": None,
        "diff_vs_control": None,
    }
    gen = torch.Generator().manual_seed(seed)
    boot_s, boot_c = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        d = _boot_means(t, _counts(gen, b, t.shape[0])) - _boot_means(
            n_, _counts(gen, b, n_.shape[0])
        )
        pc = _counts(gen, b, base.shape[0])  # one paired draw for student, base and control
        boot_s.append(cosine(d, _boot_means(shift_s, pc)))
        if shift_c is not None:
            boot_c.append(cosine(d, _boot_means(shift_c, pc)))
    bs = torch.cat(boot_s).numpy() if boot_s else np.full((1, direction.shape[0]), np.nan)
    out["lo"], out["hi"] = _interval(bs, ci)
    if shift_c is not None:
        bc = torch.cat(boot_c).numpy() if boot_c else np.full_like(bs, np.nan)
        lo, hi = _interval(bc, ci)
        out["control"] = {
            "cosine": layer_cosines(direction, shift_c.mean(0)).tolist(),
            "lo": lo,
            "hi": hi,
            "shift_norm": shift_c.mean(0).norm(dim=-1).tolist(),
        }
        lo, hi = _interval(bs - bc, ci)
        mean = (np.asarray(out["cosine"]) - np.asarray(out["control"]["cosine"])).tolist()
        out["diff_vs_control"] = {"mean": mean, "lo": lo, "hi": hi}
    return out
