"""The student's update split along its teacher's top singular subspace (interp.mech.subspace):
projections, sums, energies, LoRA factors against dense, and the random control."""

from __future__ import annotations

import math

import pytest
import torch

from interp.lm.delta import Delta
from interp.mech.alignment import span_share
from interp.mech.subspace import (
    CONDITIONS,
    Basis,
    conditions,
    random_bases,
    split,
    subspaces,
    teacher_bases,
    top_singular,
)

SHAPES = {"model.layers.0.self_attn.q_proj.weight": (24, 16), "model.layers.1.mlp.up_proj.weight": (32, 20)}


def _lora(seed: int, r: int = 4, shapes=SHAPES) -> Delta:
    g = torch.Generator().manual_seed(seed)
    return Delta(factors={n: (torch.randn(r, i, generator=g), torch.randn(o, r, generator=g)) for n, (o, i) in shapes.items()})


def _dense(d: Delta) -> Delta:
    return Delta(dense_parts={n: d.dense(n).clone() for n in d.names()})


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return float((a.double() - b.double()).abs().max()) <= tol * max(1.0, float(b.double().abs().max()))


def test_top_singular_spans_a_lora_update_and_is_orthonormal():
    t = _lora(0, r=3)
    for n, (o, i) in SHAPES.items():
        b = top_singular(t, n, rank=8)
        assert b.rank == 3 and b.u.shape == (o, 3) and b.v.shape == (i, 3)  # k = rank of the update, not 8
        assert _close(b.u.T @ b.u, torch.eye(3, dtype=torch.float64), 1e-10)
        assert _close(b.v.T @ b.v, torch.eye(3, dtype=torch.float64), 1e-10)
        w = t.dense(n).double()
        assert _close(b.u @ b.u.T @ w @ b.v @ b.v.T, w, 1e-6)  # the teacher lies in its own subspace
        d = top_singular(_dense(t), n, rank=2)  # dense route, top 2 of 3: the same leading subspace
        assert _close(d.u @ d.u.T, b.u[:, :2] @ b.u[:, :2].T, 1e-6)
    assert top_singular(Delta(dense_parts={"w": torch.zeros(5, 4)}), "w", 3).rank == 0


def test_inside_is_an_idempotent_two_sided_projection_and_parts_sum_to_the_whole():
    teacher, student = _lora(1, r=3), _lora(2, r=4)
    bases = teacher_bases(teacher, rank=2)
    sp = split(student, bases)
    inside, outside = sp.part(1.0, 0.0), sp.part(0.0, 1.0)
    for n in SHAPES:
        b, ins = bases[n], inside.dense(n).double()
        assert _close(b.u @ b.u.T @ ins @ b.v @ b.v.T, ins, 1e-6)  # P(inside) = inside
        assert _close(b.u @ b.u.T @ outside.dense(n).double() @ b.v @ b.v.T, torch.zeros_like(ins), 1e-5)  # P(outside) = 0
        assert _close(ins + outside.dense(n).double(), student.dense(n).double(), 1e-5)
        assert _close(sp.part(1.0, 1.0).dense(n), student.dense(n), 1e-5)
        assert torch.linalg.matrix_rank(ins, rtol=1e-5).item() <= 2
        # the scaled conditions are the scaled parts
        for a, c in ((0.5, 1.0), (2.0, 1.0), (0.0, 1.0), (2.0, 0.0)):
            assert _close(sp.part(a, c).dense(n).double(), a * ins + c * outside.dense(n).double(), 1e-5)
    # orthogonal: energies add up; the inside fraction is span_share's two-sided share
    e = sp.energy()
    assert e["inside"] + e["outside"] == pytest.approx(1.0)
    ins_sq = sum(float((inside.dense(n).double() ** 2).sum()) for n in SHAPES)
    assert e["inside"] == pytest.approx(ins_sq / e["sq_norm"], rel=1e-6)
    assert e["inside"] == pytest.approx(span_share(student, teacher, rank=2)["share"], rel=1e-6)
    assert 0 < e["inside"] < 1 and set(e["per_module"]) == {"q_proj", "up_proj"}


def test_left_only_projection_would_keep_more_than_the_two_sided_one():
    """The documented choice: the two-sided inside is a subset of the left-only one."""
    teacher, student = _lora(3, r=3), _lora(4, r=6)
    bases = teacher_bases(teacher, rank=3)
    e = split(student, bases).energy()
    left = sum(float(((bases[n].u.T @ student.dense(n).double()) ** 2).sum()) for n in SHAPES)
    assert e["inside"] * e["sq_norm"] < left


def test_lora_factor_students_match_dense_students():
    teacher, student = _lora(5, r=3), _lora(6, r=4)
    bases = teacher_bases(teacher, rank=3)
    fac, den = split(student, bases), split(_dense(student), bases)
    for a, c in [(x[1], x[2]) for x in CONDITIONS]:
        pf, pd = fac.part(a, c), den.part(a, c)
        if c != 0:
            assert pf.factors and not pf.dense_parts  # a LoRA student is never densified
        for n in SHAPES:
            assert _close(pf.dense(n), pd.dense(n), 1e-5), (a, c, n)
    assert fac.energy()["inside"] == pytest.approx(den.energy()["inside"], rel=1e-6)
    # and a dense teacher gives the same subspace as its factors
    dense_t = teacher_bases(_dense(teacher), rank=3)
    for n in SHAPES:
        assert _close(dense_t[n].u @ dense_t[n].u.T, bases[n].u @ bases[n].u.T, 1e-6)


def test_parameters_without_a_teacher_subspace_are_wholly_outside():
    teacher, student = _lora(7, r=2), _lora(8, r=2)
    student.dense_parts["model.norm.weight"] = torch.randn(24)  # 1-D: no subspace
    student.dense_parts["model.embed_tokens.weight"] = torch.randn(10, 24)  # the teacher did not update it
    sp = split(student, teacher_bases(teacher, rank=2))
    for n in ("model.norm.weight", "model.embed_tokens.weight"):
        assert torch.equal(sp.part(1.0, 0.0).dense(n), torch.zeros_like(student.dense(n)))
        assert torch.equal(sp.part(0.0, 1.0).dense(n), student.dense(n))
        assert torch.equal(sp.part(2.0, 1.0).dense(n), student.dense(n))
    assert sp.energy()["per_module"]["norm"] == 0.0


def test_random_control_has_the_teachers_rank_is_orthonormal_and_seeded():
    teacher = _lora(9, r=3)
    tb = teacher_bases(teacher, rank=2)
    rb, again, other = random_bases(tb, seed=0), random_bases(tb, seed=0), random_bases(tb, seed=1)
    for n in SHAPES:
        assert rb[n].rank == tb[n].rank == 2 and rb[n].u.shape == tb[n].u.shape and rb[n].v.shape == tb[n].v.shape
        assert _close(rb[n].u.T @ rb[n].u, torch.eye(2, dtype=torch.float64), 1e-10)
        assert torch.equal(rb[n].u, again[n].u) and torch.equal(rb[n].v, again[n].v)
        assert not torch.allclose(rb[n].u, other[n].u)
    # a parameter's draw does not depend on which others are present
    one = {n: tb[n] for n in list(SHAPES)[1:]}
    n1 = list(SHAPES)[1]
    assert torch.equal(random_bases(one, seed=0)[n1].u, rb[n1].u)


def test_random_subspace_holds_about_chance_energy_and_the_teachers_holds_a_planted_part():
    """A student = 3 x its teacher's update + noise: the teacher's subspace holds most of it, a
    random one of equal rank about k^2 / (d_out d_in) of it."""
    shapes = {"w": (60, 50)}
    teacher = _lora(10, r=2, shapes=shapes)
    g = torch.Generator().manual_seed(11)
    student = Delta(dense_parts={"w": 3 * teacher.dense("w") + 0.5 * torch.randn(60, 50, generator=g)})
    energy, deltas = conditions(student, subspaces(teacher, rank=2, seed=0))
    assert energy["teacher"]["inside"] > 0.9
    assert energy["random"]["inside"] < 20 * (2 * 2) / (60 * 50)
    got = dict(deltas)
    assert list(got) == [c[0] for c in CONDITIONS]
    assert _close(got["full"].dense("w"), student.dense("w"), 1e-6)
    assert _close(got["inside"].dense("w") + got["outside"].dense("w"), student.dense("w"), 1e-5)
    assert _close(got["random_inside"].dense("w") + got["random_outside"].dense("w"), student.dense("w"), 1e-5)
    assert not _close(got["inside"].dense("w"), got["random_inside"].dense("w"), 1e-3)
    _, some = conditions(student, subspaces(teacher, rank=2, seed=0), names=["inside_x2", "outside"])
    assert [n for n, _ in some] == ["outside", "inside_x2"]  # CONDITIONS' order


def test_zero_student_has_no_energy_fraction():
    teacher = _lora(12, r=2)
    zero = Delta(factors={n: (torch.zeros(2, i), torch.zeros(o, 2)) for n, (o, i) in SHAPES.items()})
    e = split(zero, teacher_bases(teacher, 2)).energy()
    assert math.isnan(e["inside"])
    with pytest.raises(ValueError, match="rank must be"):
        top_singular(teacher, list(SHAPES)[0], 0)
    with pytest.raises(ValueError, match="vs subspace"):
        split(_lora(13, shapes={list(SHAPES)[0]: (8, 8)}), teacher_bases(teacher, 2))
    assert isinstance(teacher_bases(teacher, 2)[list(SHAPES)[0]], Basis)
