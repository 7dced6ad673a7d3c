"""Update alignment: does the student's parameter delta point the same way as the teacher's?

Deltas are dicts `{base parameter name: Tensor[d_out, d_in]}` as saved by `interp.lm.finetune`
(`student = base + delta`). The quantities:

- cosine(student delta, teacher delta), per tensor, per layer (all shared tensors of a layer
  flattened and concatenated), per module type (one module across all layers) and overall.
  +1: the student moved exactly along the teacher's update; 0: orthogonal (what two unrelated
  high-dimensional updates give); -1: opposite. A zero delta has no direction: its cosine is
  nan and the reason is listed under `notes`.
- L2 norms of both deltas (overall and per layer) and their ratio student / teacher.
- principal angles (radians, in [0, pi/2], ascending) between the top-`rank` left ("out",
  the output space the update writes to) or right ("in", the input space it reads from)
  singular subspaces of the two deltas. 0: the subspaces share a direction; pi/2: orthogonal.
  Random subspaces of a large space are nearly orthogonal, so each module type reports the
  mean angles of random subspaces of the same dimension as the "unaligned" baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.lm.delta import Delta, parse_param_name
from interp.stats import Estimate, t_interval


def as_delta(d: Delta | dict[str, Tensor]) -> Delta:
    """A `Delta` (LoRA factors or dense tensors) from either form."""
    return d if isinstance(d, Delta) else Delta(dense_parts=dict(d))


def shared_names(student: Delta | dict[str, Tensor], teacher: Delta | dict[str, Tensor]) -> list[str]:
    """Names present in both deltas (sorted); ValueError listing every shape mismatch."""
    s, t = as_delta(student), as_delta(teacher)
    shared = sorted(set(s.names()) & set(t.names()))
    bad = [f"{n}: student {s.shape(n)} vs teacher {t.shape(n)}" for n in shared if s.shape(n) != t.shape(n)]
    if bad:
        raise ValueError("delta shapes differ: " + "; ".join(bad))
    return shared


class _Acc:
    """Running <s, t>, |s|^2, |t|^2 for one group of tensors (float64 for stable sums)."""

    __slots__ = ("dot", "ss", "tt")

    def __init__(self) -> None:
        self.dot = self.ss = self.tt = 0.0

    def add(self, dot: float, ss: float, tt: float) -> None:
        self.dot += dot
        self.ss += ss
        self.tt += tt

    def cosine(self, label: str, notes: list[str]) -> float:
        return safe_cosine(self.dot, self.ss, self.tt, label, notes)


def safe_cosine(dot: float, ss: float, tt: float, label: str, notes: list[str]) -> float:
    """dot / (|s| |t|), or nan with a reason appended to `notes` when a vector is zero."""
    if ss <= 0.0 or tt <= 0.0:
        which = " and ".join(w for w, v in (("student", ss), ("teacher", tt)) if v <= 0.0)
        notes.append(f"{label}: {which} vector has zero norm, cosine undefined (nan)")
        return float("nan")
    return float(max(-1.0, min(1.0, dot / math.sqrt(ss * tt))))


def delta_cosines(student: Delta | dict[str, Tensor], teacher: Delta | dict[str, Tensor]) -> dict:
    """Cosines and norms of two deltas over the tensor names they share.

    LoRA deltas given as factors are compared exactly without dense matrices
    (`Delta.inner`: <BA, B'A'> = sum((B^T B') * (A A'^T))).

    Returns a JSON-able dict with keys: per_tensor {name: cos}, per_layer {layer: cos},
    per_module {module: cos}, overall (cos), norms {student, teacher, ratio,
    per_layer {layer: {student, teacher}}}, n_tensors, only_student, only_teacher, notes.
    """
    student, teacher = as_delta(student), as_delta(teacher)
    shared = shared_names(student, teacher)
    notes: list[str] = []
    if not shared:
        notes.append("no tensor names shared by student and teacher deltas")
    overall, per_layer, per_module = _Acc(), {}, {}
    per_tensor = {}
    for name in shared:
        dot, ss, tt = student.inner(teacher, name), student.sq_norm(name), teacher.sq_norm(name)
        per_tensor[name] = safe_cosine(dot, ss, tt, name, notes)
        layer, module = parse_param_name(name)
        overall.add(dot, ss, tt)
        per_module.setdefault(module, _Acc()).add(dot, ss, tt)
        if layer is not None:
            per_layer.setdefault(layer, _Acc()).add(dot, ss, tt)
    s_norm, t_norm = math.sqrt(overall.ss), math.sqrt(overall.tt)
    return {
        "per_tensor": per_tensor,
        "per_layer": {k: a.cosine(f"layer {k}", notes) for k, a in sorted(per_layer.items())},
        "per_module": {k: a.cosine(f"module {k}", notes) for k, a in sorted(per_module.items())},
        "overall": overall.cosine("overall", notes),
        "norms": {
            "student": s_norm,
            "teacher": t_norm,
            "ratio": s_norm / t_norm if t_norm > 0 else float("nan"),
            "per_layer": {
                k: {"student": math.sqrt(a.ss), "teacher": math.sqrt(a.tt)}
                for k, a in sorted(per_layer.items())
            },
        },
        "n_tensors": len(shared),
        "only_student": sorted(set(student) - set(teacher)),
        "only_teacher": sorted(set(teacher) - set(student)),
        "notes": notes,
    }


def _orthonormal_basis(x: Tensor) -> Tensor:
    """Orthonormal basis of the column space of x (SVD, so rank-deficient inputs are safe)."""
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return u[:, :0]
    tol = s[0] * max(x.shape) * torch.finfo(x.dtype).eps
    return u[:, : int((s > tol).sum())]


def principal_angles(a: Float[Tensor, "d r1"], b: Float[Tensor, "d r2"]) -> Float[Tensor, " k"]:
    """Principal angles (radians, ascending, in [0, pi/2]) between the column spaces of a and b.

    k = min(rank a, rank b). Cosines are the singular values of Q_a^T Q_b; small angles are
    taken from the sines (singular values of Q_b - Q_a Q_a^T Q_b) because arccos loses all
    precision near 0 (Knyazev & Argentati 2002).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"principal_angles needs [d, r] matrices, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    qa, qb = _orthonormal_basis(a.detach().double()), _orthonormal_basis(b.detach().double())
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa  # angles are symmetric; the residual trick wants rank(qb) <= rank(qa)
    k = qb.shape[1]
    if k == 0:
        return torch.empty(0, dtype=torch.float64)
    m = qa.T @ qb
    cos = torch.linalg.svdvals(m).clamp(0.0, 1.0)  # descending -> angles ascending
    sin = torch.linalg.svdvals(qb - qa @ m).clamp(0.0, 1.0).flip(0)  # ascending
    from_cos, from_sin = torch.arccos(cos[:k]), torch.arcsin(sin[:k])
    angles = torch.where(from_cos < math.pi / 4, from_sin, from_cos)
    return angles.sort().values.clamp(0.0, math.pi / 2)


def random_subspace_baseline(d: int, rank: int, n_samples: int = 32, seed: int = 0) -> dict:
    """Mean principal angles between two random `rank`-dim subspaces of R^d (Gaussian bases).

    What "unaligned" looks like at this dimension: {mean_angle, min_angle, d, rank}, the mean
    and the smallest angle averaged over `n_samples` pairs drawn with a fixed seed.
    """
    return dict(_random_baseline(d, rank, n_samples, seed))  # a copy: callers may mutate


@lru_cache(maxsize=64)


def _random_baseline(d: int, rank: int, n_samples: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    means, mins = [], []
    for _ in range(n_samples):
        a = torch.randn(d, rank, generator=gen, dtype=torch.float64)
        b = torch.randn(d, rank, generator=gen, dtype=torch.float64)
        ang = principal_angles(a, b)
        means.append(float(ang.mean()))
        mins.append(float(ang[0]))
    return {
        "mean_angle": float(np.mean(means)),
        "min_angle": float(np.mean(mins)),
        "d": d,
        "rank": rank,
    }


def _top_singular(x: Tensor, rank: int, side: str) -> Tensor:
    """Top-`rank` left (out: [d_out, r]) or right (in: [d_in, r]) singular vectors, nonzero only."""
    x64 = x.detach().double()
    if min(x.shape) > 4 * (rank + 8):
        # Randomised SVD: ~50x faster than a full SVD of a 1536x576 matrix, for dense deltas of
        # low rank (factored ones take `_delta_singular`'s exact route).
        u, s, v = torch.svd_lowrank(x64, q=rank + 8, niter=4)
        order = torch.argsort(s, descending=True)
        u, s, vh = u[:, order], s[order], v[:, order].T
    else:
        u, s, vh = torch.linalg.svd(x64, full_matrices=False)
    return _kept(u, s, vh, rank, side, x.dtype, max(x.shape))


def _kept(u: Tensor, s: Tensor, vh: Tensor, rank: int, side: str, dtype: torch.dtype, n: int) -> Tensor:
    # Directions below the input dtype's rounding noise are not part of the update.
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 1e-15
    keep = min(rank, int((s > s[0] * n * eps).sum()) if s[0] > 0 else 0)
    return u[:, :keep] if side == "out" else vh[:keep].T


def _delta_singular(delta: Delta, name: str, rank: int, side: str) -> Tensor:
    """`_top_singular` of one parameter's update; exact from the LoRA factors when it has them.

    B A = Q_B R_B R_A^T Q_A^T (QR of B and of A^T), so its SVD is that of the r x r core
    R_B R_A^T, rotated back: O((d_out + d_in) r^2) instead of passes over a dense matrix."""
    if name not in delta.factors:
        return _top_singular(delta.dense(name), rank, side)
    a, b = delta.factors[name]
    qb, rb = torch.linalg.qr(b.detach().double())
    qa, ra = torch.linalg.qr(a.detach().double().T)
    uc, s, vhc = torch.linalg.svd(rb @ ra.T)
    return _kept(qb @ uc, s, vhc @ qa.T, rank, side, a.dtype, max(b.shape[0], a.shape[1]))


@dataclass
class SubspaceAngles:
    """Principal angles between the deltas' singular subspaces, per tensor and per module type."""

    rank: int
    side: str
    per_tensor: dict[str, Tensor]  # name -> angles (radians, ascending)
    per_module: dict[str, dict]  # module -> summary (see `delta_subspace_angles`)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "side": self.side,
            "units": "radians",
            "per_tensor": {k: [float(x) for x in v] for k, v in self.per_tensor.items()},
            "per_module": self.per_module,
            "notes": list(self.notes),
        }


def delta_subspace_angles(
    student_delta: Delta | dict[str, Tensor],
    teacher_delta: Delta | dict[str, Tensor],
    rank: int = 8,
    side: Literal["out", "in"] = "out",
    baseline_samples: int = 32,
    seed: int = 0,
) -> SubspaceAngles:
    """Principal angles between the top-`rank` singular subspaces of each shared 2-D delta.

    `side="out"` compares left singular vectors (where the updates write, R^{d_out});
    `side="in"` compares right singular vectors (what they read, R^{d_in}). Per module type:
    mean_angle (mean over tensors of the mean angle), min_angle (the smallest angle of any
    tensor), mean_min_angle, n_tensors, and `baseline` = the same quantities for random
    subspaces of that dimension and rank.
    """
    if side not in ("out", "in"):
        raise ValueError(f"side must be 'out' or 'in', got {side!r}")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    student_delta, teacher_delta = as_delta(student_delta), as_delta(teacher_delta)
    shared = shared_names(student_delta, teacher_delta)
    notes: list[str] = []
    per_tensor: dict[str, Tensor] = {}
    groups: dict[str, list[tuple[Tensor, int, int]]] = {}
    for name in shared:
        if len(student_delta.shape(name)) != 2:
            notes.append(f"{name}: not a matrix ({len(student_delta.shape(name))}-D), skipped")
            continue
        us, ut = _delta_singular(student_delta, name, rank, side), _delta_singular(teacher_delta, name, rank, side)
        if us.shape[1] == 0 or ut.shape[1] == 0:
            notes.append(f"{name}: zero delta, no singular subspace, skipped")
            continue
        ang = principal_angles(us, ut)
        per_tensor[name] = ang
        groups.setdefault(parse_param_name(name)[1], []).append(
            (ang, us.shape[0], min(us.shape[1], ut.shape[1]))
        )
    per_module = {}
    for module, items in sorted(groups.items()):
        d, r = items[0][1], items[0][2]
        per_module[module] = {
            "mean_angle": float(np.mean([float(a.mean()) for a, _, _ in items])),
            "min_angle": float(min(float(a[0]) for a, _, _ in items)),
            "mean_min_angle": float(np.mean([float(a[0]) for a, _, _ in items])),
            "n_tensors": len(items),
            "baseline": random_subspace_baseline(d, r, baseline_samples, seed),
        }
    return SubspaceAngles(rank, side, per_tensor, per_module, notes)


def span_share(student_delta: Delta | dict[str, Tensor], teacher_delta: Delta | dict[str, Tensor],
               rank: int = 8) -> dict:  # fmt: skip
    """The linear picture: how much of the student's update lies in the span of the teacher's.

    Per shared 2-D tensor, the student's update projected on both sides onto the teacher's
    top-`rank` singular subspaces (U U^T dS V V^T); share = sum of projected squared norms over
    sum of squared norms. Baseline: the share a random subspace pair of the same ranks takes in
    expectation, r_out r_in / (d_out d_in), weighted the same way. 1 = all of the student's update
    is inside the teacher's span; the baseline is what chance alignment gives."""
    student_delta, teacher_delta = as_delta(student_delta), as_delta(teacher_delta)
    inside = total = chance = 0.0
    n = 0
    for name in shared_names(student_delta, teacher_delta):
        if len(student_delta.shape(name)) != 2:
            continue
        u, v = _delta_singular(teacher_delta, name, rank, "out"), _delta_singular(teacher_delta, name, rank, "in")
        sq = student_delta.sq_norm(name)
        if u.shape[1] == 0 or sq == 0:
            continue
        if name in student_delta.factors:  # U^T B A V without the dense B A
            a, b = student_delta.factors[name]
            proj = (u.T @ b.double()) @ (a.double() @ v)
        else:
            proj = u.T @ student_delta.dense(name).double() @ v
        inside += float((proj**2).sum())
        total += sq
        d_out, d_in = student_delta.shape(name)
        chance += sq * u.shape[1] * v.shape[1] / (d_out * d_in)
        n += 1
    if total == 0:
        return {"share": float("nan"), "baseline": float("nan"), "ratio": float("nan"), "n_tensors": 0, "rank": rank}
    return {"share": inside / total, "baseline": chance / total, "ratio": inside / chance, "n_tensors": n, "rank": rank}


def aggregate_over_seeds(values: Sequence[float]) -> Estimate:
    """Mean and t-interval of one quantity over independent seeds (non-finite values dropped)."""
    x = np.asarray(list(values), dtype=float)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        raise ValueError(f"aggregate_over_seeds needs at least one finite value, got {list(x)}")
    return t_interval(finite)
