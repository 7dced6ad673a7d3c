"""Is a direction necessary for a student's shift? The math of ablating the shift along it.

A student's shift at block l is h_student - h_base: the two models' block outputs on the same
input, same position. Ablating the shift along a unit direction v_l keeps all of the student
but that component of its shift:

    h_student' = h_student - ((h_student - h_base) . v_l) v_l

The base's own activation is a fixed point, and a student whose shift lies along v_l is put
back on the base at that block. `interp.lm.steer.ablate_shift` applies this inside the
student's forward, causally (later blocks see the ablated activation); the formula itself is
`interp.lm.steer.remove_shift`, which lives there because `lm` sits below `mech`. Here are the
pieces around it, on recorded `[n, layer, d_model]` activations (rows = the same prompts for
student and base):

- `unit_directions`: per-layer unit directions for the layers to ablate (what `ablate_shift` takes);
- `shift_components`: the shift's component along each layer's direction, per row;
- `remove_shift_acts`: the ablation applied to recorded activations, each layer on its own
  (no downstream effect: the first-order picture the causal hook is compared with);
- `covariance_directions`: the control, random directions drawn with the activations'
  covariance, v = Sigma^{1/2} z / |Sigma^{1/2} z|, z ~ N(0, I), seeded: directions as likely as
  the activations themselves make them, so ablating one tests "any direction the model uses"
  rather than "an isotropic direction the model ignores".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from interp.lm.steer import remove_shift
from interp.mech.directions import projections


def unit_directions(
    directions: Float[Tensor, "layer d_model"] | Mapping[int, Float[Tensor, " d_model"]],
    layers: Iterable[int] | None = None,
) -> dict[int, Float[Tensor, " d_model"]]:
    """`{layer: unit float32 vector}` for `layers` (default: every layer given).

    Args:
        directions: one row per layer (`[layer, d_model]`, e.g. a trait direction per layer) or
            a `{layer: vector}` mapping.
        layers: which layers to keep; negative indices count from the last row of a tensor.
    """
    if isinstance(directions, Mapping):
        rows = {int(k): torch.as_tensor(v) for k, v in directions.items()}
        chosen = list(rows) if layers is None else list(layers)
    else:
        if directions.ndim != 2:
            raise ValueError(f"directions must be [layer, d_model], got {tuple(directions.shape)}")
        n = directions.shape[0]
        rows = dict(enumerate(directions))
        chosen = list(rows) if layers is None else [k % n if -n <= k < n else k for k in layers]
    out = {}
    for layer in chosen:
        if layer not in rows:
            raise KeyError(f"no direction for layer {layer} (have {sorted(rows)})")
        v = rows[layer].detach().float()
        norm = v.norm()
        if not torch.isfinite(v).all() or norm == 0:
            raise ValueError(f"direction for layer {layer} is zero or not finite")
        out[layer] = v / norm
    if not out:
        raise ValueError("no layers chosen")
    return out


def _as_matrix(
    directions: Mapping[int, Tensor], n_layers: int, d_model: int
) -> tuple[Tensor, list[int]]:
    bad = [k for k in directions if not 0 <= k < n_layers]
    if bad:
        raise IndexError(f"layer(s) {bad} out of range for {n_layers} recorded layers")
    layers = sorted(directions)
    units = unit_directions(directions, layers)
    mat = torch.stack([units[k] for k in layers])
    if mat.shape[1] != d_model:
        raise ValueError(f"directions have d_model {mat.shape[1]}, activations {d_model}")
    return mat, layers


def _check_pair(student_acts: Tensor, base_acts: Tensor) -> None:
    if student_acts.ndim != 3 or student_acts.shape != base_acts.shape:
        raise ValueError(
            f"student and base acts must be paired [n, layer, d_model]: "
            f"{tuple(student_acts.shape)} vs {tuple(base_acts.shape)}"
        )


def shift_components(
    student_acts: Float[Tensor, "n layer d_model"],
    base_acts: Float[Tensor, "n layer d_model"],
    directions: Mapping[int, Float[Tensor, " d_model"]],
) -> Float[Tensor, "n chosen"]:
    """(student - base) . v_l per row, for each layer of `directions` in sorted order."""
    _check_pair(student_acts, base_acts)
    mat, layers = _as_matrix(directions, student_acts.shape[1], student_acts.shape[2])
    shift = (student_acts.float() - base_acts.float())[:, layers]
    return projections(shift, mat)


def remove_shift_acts(
    student_acts: Float[Tensor, "n layer d_model"],
    base_acts: Float[Tensor, "n layer d_model"],
    directions: Mapping[int, Float[Tensor, " d_model"]],
) -> Float[Tensor, "n layer d_model"]:
    """The student's recorded activations with the shift along v_l removed at each listed layer.

    Each layer on its own: the later layers of a recording do not see an earlier removal (the
    causal version, where they do, is `interp.lm.steer.ablate_shift`).
    """
    _check_pair(student_acts, base_acts)
    mat, layers = _as_matrix(directions, student_acts.shape[1], student_acts.shape[2])
    out = student_acts.clone()
    for row, layer in enumerate(layers):
        out[:, layer] = remove_shift(student_acts[:, layer], base_acts[:, layer], mat[row])
    return out


def covariance_directions(
    acts: Float[Tensor, "n layer d_model"], seed: int, n_draws: int = 1
) -> Float[Tensor, "draw layer d_model"]:
    """Random unit directions per layer, drawn with the activations' covariance: Sigma^{1/2} z.

    v = Sigma^{1/2} z / |Sigma^{1/2} z| with z ~ N(0, I), one draw per layer. Sigma is the
    (centred, unbiased) covariance of the rows at each layer; its square root comes
    from its eigendecomposition (negative round-off eigenvalues clipped to 0). Draws are seeded
    (one `torch.Generator`), so a control is reproducible; different seeds give different draws.
    """
    if acts.ndim != 3 or acts.shape[0] < 2:
        raise ValueError(f"acts must be [n >= 2, layer, d_model], got {tuple(acts.shape)}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    x = acts.double()
    x = x - x.mean(0, keepdim=True)
    cov = torch.einsum("nld,nle->lde", x, x) / (x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)  # [layer, d], [layer, d, d]
    root = evecs * evals.clamp(min=0).sqrt().unsqueeze(-2)  # Q diag(sqrt(lambda))
    root = root @ evecs.transpose(-1, -2)  # Q diag(sqrt(lambda)) Q^T
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_draws, x.shape[1], x.shape[2], generator=gen, dtype=torch.float64)
    v = torch.einsum("lde,kle->kld", root, z)
    norm = v.norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise ValueError("the activations do not vary at some layer: no direction to draw")
    return (v / norm).float()
