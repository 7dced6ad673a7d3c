"""The weight-space account, tested causally: a student's update split along its teacher's.

Per 2-D parameter with a teacher update dW_T, the teacher's subspace is the pair of its top-r
left and right singular vectors, U [d_out, k] and V [d_in, k] (k = min(r, rank dW_T)). A
student's update dW_S splits into

    inside  = U U^T dW_S V V^T          (= U C V^T, C = U^T dW_S V, a k x k core)
    outside = dW_S - inside.

Why the two-sided projection and not the left-only U U^T dW_S: a LoRA teacher's update lives in
exactly this set (it reads from V's directions and writes to U's), so "the part of the student's
update the teacher's update could have made" is the two-sided part; a left-only projection would
also keep whatever the student writes into the teacher's output directions from any input, r/d_out
of a random update's energy instead of r^2/(d_out d_in). It is the projection `span_share`
(`interp.mech.alignment`) measures, so the energy fractions here equal its share. P(X) = U U^T X
V V^T is an orthogonal projection on matrices under the Frobenius inner product, so inside and
outside are orthogonal and their squared norms add up to |dW_S|^2.

Parameters the teacher did not update (or not 2-D: norms, biases) have k = 0: the whole update
is outside. The control is a random subspace of equal rank per parameter: U, V drawn as
orthonormal bases (QR of Gaussians), seeded per parameter name, with the teacher's k.

Nothing is densified for a LoRA student: alpha * inside + beta * outside = beta * B A +
(alpha - beta) U C V^T = [beta B, (alpha - beta) U C] [A; V^T], factors of rank r_S + k. A dense
student's parts are dense, built one parameter at a time (`WeightSplit.part`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.lm.delta import Delta, parse_param_name
from interp.mech.alignment import _kept  # the one rule for directions below rounding noise

# The conditions of the causal test: (name, scale of the inside part, scale of the outside part,
# which subspace). "full" (1, 1) is the student itself; inside x 0 + outside is "outside".
CONDITIONS: tuple[tuple[str, float, float, str], ...] = (
    ("full", 1.0, 1.0, "teacher"),
    ("inside", 1.0, 0.0, "teacher"),
    ("outside", 0.0, 1.0, "teacher"),
    ("inside_x0.5", 0.5, 1.0, "teacher"),
    ("inside_x2", 2.0, 1.0, "teacher"),
    ("random_inside", 1.0, 0.0, "random"),
    ("random_outside", 0.0, 1.0, "random"),
)


@dataclass(frozen=True)
class Basis:
    """Orthonormal columns: u [d_out, k] (where an update writes), v [d_in, k] (what it reads)."""

    u: Float[Tensor, "d_out k"]
    v: Float[Tensor, "d_in k"]

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])


def top_singular(delta: Delta, name: str, rank: int) -> Basis:
    """The top-`rank` left and right singular vectors of one parameter's update, from one
    decomposition (so U and V pair up), float64. Exact: through the r x r core for LoRA factors
    (B A = Q_B R_B R_A^T Q_A^T), a full SVD for dense updates (deterministic; no randomised SVD).
    Directions below the input dtype's rounding noise are dropped (k can be < rank)."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if name in delta.factors:
        a, b = delta.factors[name]
        qb, rb = torch.linalg.qr(b.detach().double())
        qa, ra = torch.linalg.qr(a.detach().double().T)
        uc, s, vhc = torch.linalg.svd(rb @ ra.T)
        u, vh, dtype, n = qb @ uc, vhc @ qa.T, a.dtype, max(b.shape[0], a.shape[1])
    else:
        x = delta.dense(name)
        if x.ndim != 2:
            raise ValueError(f"{name}: singular vectors need a 2-D update, got shape {tuple(x.shape)}")
        u, s, vh = torch.linalg.svd(x.detach().double(), full_matrices=False)
        dtype, n = x.dtype, max(x.shape)
    if s.numel() == 0:
        return Basis(u[:, :0], vh[:0].T)
    return Basis(_kept(u, s, vh, rank, "out", dtype, n), _kept(u, s, vh, rank, "in", dtype, n))


def teacher_bases(teacher: Delta, rank: int) -> dict[str, Basis]:
    """Each 2-D parameter of the teacher's update: its top-`rank` singular subspace."""
    return {n: top_singular(teacher, n, rank) for n in teacher.names() if len(teacher.shape(n)) == 2}


def random_basis(d: int, k: int, gen: torch.Generator) -> Float[Tensor, "d k"]:
    """k orthonormal columns in R^d, uniformly distributed (QR of a Gaussian, signs fixed)."""
    if k > d:
        raise ValueError(f"cannot draw {k} orthonormal columns in R^{d}")
    q, r = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(r))
    return q * torch.where(signs == 0, 1.0, signs)


def random_bases(like: dict[str, Basis], seed: int) -> dict[str, Basis]:
    """The control: per parameter, a random subspace pair of the same shape and rank as
    `like`'s, drawn from a generator seeded by (seed, parameter name): reproducible, and
    independent of which other parameters are present."""
    out = {}
    for name, b in like.items():
        mixed = int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(mixed)
        out[name] = Basis(random_basis(b.u.shape[0], b.rank, gen), random_basis(b.v.shape[0], b.rank, gen))
    return out


def core(delta: Delta, name: str, basis: Basis) -> Float[Tensor, "k k"]:
    """C = U^T dW V (float64): the inside part is U C V^T. From LoRA factors without B A."""
    if name in delta.factors:
        a, b = delta.factors[name]
        return (basis.u.T @ b.double()) @ (a.double() @ basis.v)
    return basis.u.T @ delta.dense(name).double() @ basis.v


@dataclass
class WeightSplit:
    """A student's update and, per parameter, the subspace it is split along with its core."""

    student: Delta
    bases: dict[str, Basis]
    cores: dict[str, Tensor] = field(default_factory=dict)

    def _basis(self, name: str) -> Basis | None:
        b = self.bases.get(name)
        return b if b is not None and b.rank > 0 and len(self.student.shape(name)) == 2 else None

    def inside_dense(self, name: str) -> Tensor:
        """The inside part of one parameter, dense float64 (zeros where it has no subspace)."""
        b = self._basis(name)
        if b is None:
            return torch.zeros(self.student.shape(name), dtype=torch.float64)
        return b.u @ self.cores[name] @ b.v.T

    def part(self, inside: float, outside: float) -> Delta:
        """inside * (inside part) + outside * (outside part), as a new `Delta` in the student's
        dtype: factored where the student is (rank r_S + k), dense where it is."""
        out = Delta()
        for name in self.student.names():
            b, c = self._basis(name), self.cores.get(name)
            extra = inside - outside  # outside * dW_S + (inside - outside) * U C V^T
            factored = name in self.student.factors
            if b is None or extra == 0:  # the student scaled (zero-rank subspace: all outside)
                if factored:
                    a, bs = self.student.factors[name]
                    out.factors[name] = (a, bs * outside)
                else:  # (the student's own tensor when unscaled: parts are read, never written)
                    dense = self.student.dense(name)
                    out.dense_parts[name] = dense if outside == 1 else dense * outside
            elif outside == 0:  # the inside alone: rank k, factored whatever the student
                dtype = self.student.factors[name][0].dtype if factored else self.student.dense(name).dtype
                out.factors[name] = (b.v.T.to(dtype).contiguous(), (b.u @ c * extra).to(dtype))
            elif factored:
                a, bs = self.student.factors[name]
                out.factors[name] = (torch.cat([a, b.v.T.to(a.dtype)]), torch.cat([bs * outside, (b.u @ c * extra).to(bs.dtype)], dim=1))
            else:
                dense = self.student.dense(name)
                out.dense_parts[name] = (dense.double() * outside + extra * (b.u @ c @ b.v.T)).to(dense.dtype)
        return out

    def energy(self) -> dict:
        """Share of |dW_S|^2 inside (|C|^2, exact: U and V are orthonormal), overall and per
        module type; the outside holds the rest. nan for a zero update."""
        tot: dict[str, list[float]] = {}
        for name in self.student.names():
            sq = self.student.sq_norm(name)
            ins = float((self.cores[name] ** 2).sum()) if self._basis(name) is not None else 0.0
            acc = tot.setdefault(parse_param_name(name)[1], [0.0, 0.0])
            acc[0] += ins
            acc[1] += sq
        inside, total = sum(v[0] for v in tot.values()), sum(v[1] for v in tot.values())
        frac = lambda i, t: i / t if t > 0 else math.nan  # noqa: E731
        return {"inside": frac(inside, total), "outside": frac(total - inside, total), "sq_norm": total,
                "per_module": {m: frac(i, t) for m, (i, t) in sorted(tot.items())}}  # fmt: skip


def split(student: Delta, bases: dict[str, Basis]) -> WeightSplit:
    """The student's update split along `bases` (per parameter; missing names: all outside).
    Only the k x k cores are computed here."""
    cores = {}
    for name in student.names():
        b = bases.get(name)
        if b is not None and b.rank > 0 and len(student.shape(name)) == 2:
            if tuple(student.shape(name)) != (b.u.shape[0], b.v.shape[0]):
                raise ValueError(f"{name}: student update {student.shape(name)} vs subspace {(b.u.shape[0], b.v.shape[0])}")
            cores[name] = core(student, name, b)
    return WeightSplit(student, bases, cores)


def subspaces(teacher: Delta, rank: int, seed: int) -> dict[str, dict[str, Basis]]:
    """The two subspaces a student is split along: the teacher's top-`rank` ("teacher") and the
    control, random ones of equal rank per parameter ("random", seeded by `seed`)."""
    t_bases = teacher_bases(teacher, rank)
    return {"teacher": t_bases, "random": random_bases(t_bases, seed)}


def conditions(
    student: Delta, bases: dict[str, dict[str, Basis]], names: list[str] | None = None
) -> tuple[dict[str, dict], Iterator[tuple[str, Delta]]]:
    """The causal test's inputs for one student: (energy fractions inside each subspace of
    `bases` (`subspaces`), an iterator of (condition, delta) over `CONDITIONS` (or those in
    `names`), each delta built when the iterator reaches it)."""
    splits = {k: split(student, b) for k, b in bases.items()}
    energy = {k: s.energy() for k, s in splits.items()}
    wanted = [c for c in CONDITIONS if names is None or c[0] in names]

    def deltas() -> Iterator[tuple[str, Delta]]:
        for name, a, b, which in wanted:
            yield name, splits[which].part(a, b)

    return energy, deltas()
