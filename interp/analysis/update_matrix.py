"""Whose update does a student's update resemble? The update matrix over targets (`update_matrix`).

With one finetuned teacher per target (`teacher.mode = "finetuned"`, >= 2 targets), each student
entry's update on target t's data (seed s) is compared with every target's teacher update dW_T(u):
- C_s[t, u] = cos(dW_S(t, s), dW_T(u)) over the tensors they share (exact from LoRA factors);
- S_s[t, u] = the share of dW_S(t, s) inside dW_T(u)'s top-r singular span (`span_share`), with
  its random-subspace baseline.
The contrast is matched minus mismatched, mean diagonal minus mean off-diagonal
(`diagonal_gamma`). A student whose update resembles every finetuned teacher's alike (a
direction that any LoRA update of this base shares, whatever its trait) scores 0 on it; only
resemblance to its own teacher counts. The matched cosine alone is reported too, but it is not
the test. p: exact one-sided permutation over target labels of the seed-mean matrix (the unit is
the target; seeds of one target share its data and its teacher); CI: t-interval over seeds.

A LoRA student trained with the seed a teacher was trained with can start from the same random LoRA
A matrices as that teacher (where the draws coincide: LoRA on every
block with the teachers' rank and modules, or on the first block alone): its update then shares
their row space by construction, and its cosines with all such teachers are inflated alike.
Finetuned teachers now train on a seed of their own (`stages.teacher_seed`), so this happens only
in runs made before that (teachers on the run's `seed`, read from each teacher's manifest). Seeds
that do share are listed under `shared_init_seeds`, and the contrast is also given over the other
seeds alone (`independent_init`), where the student's LoRA initialisation is its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from interp.analysis.reader import AnalysisRun, shares_teacher_init, teacher_seeds  # noqa: F401 (tests read teacher_seeds here)
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt, fmt_est
from interp.lm.delta import Delta
from interp.mech.alignment import delta_cosines, span_share
from interp.stats import t_interval
from interp.subliminal import matrix as mx

log = logging.getLogger("interp")


def matched_contrast(mats: Sequence[np.ndarray] | np.ndarray, n_resamples: int = 10_000) -> dict[str, Any]:
    """[seed, target t, teacher u] values -> matched minus mismatched, per seed and over seeds.

    Returns per_seed contrasts, their mean with a t-interval over seeds (n = 1: no interval), the
    one-sided permutation p of the seed-mean matrix's contrast over relabellings of
    its rows, and the mean matched (diagonal) and mismatched (off-diagonal) values."""
    m = np.asarray(mats, dtype=float)
    if m.ndim != 3 or m.shape[1] != m.shape[2] or m.shape[1] < 2:
        raise ValueError(f"matched_contrast needs [seeds, k, k] with k >= 2, got shape {m.shape}")
    k = m.shape[1]
    per_seed = mx.diagonal_gamma(m)
    mean_mat = m.mean(axis=0)
    _, p, n_perm = mx.label_permutation_p(lambda order: float(mx.diagonal_gamma(mean_mat[order])), k, n_resamples)
    off = ~np.eye(k, dtype=bool)
    per_seed_p = [mx.label_permutation_p(lambda order, c=c: float(mx.diagonal_gamma(c[order])), k, n_resamples)[1]
                  for c in m]  # fmt: skip
    return {
        "contrast": t_interval(per_seed).to_dict() | {"p": p, "n_permutations": n_perm},
        "per_seed": [float(x) for x in per_seed],
        "per_seed_p": per_seed_p,
        "matched": float(np.trace(mean_mat) / k),
        "mismatched": float(mean_mat[off].mean()),
        "seed_mean_matrix": mean_mat.tolist(),
    }


def _complete(by_target: dict[str, dict[str, str]], targets: Sequence[str]) -> list[str] | None:
    """The seeds every target's student has, or None when some target has no student."""
    if any(t not in by_target for t in targets):
        return None
    seeds = set.intersection(*(set(by_target[t]) for t in targets))
    return sorted(seeds, key=int) or None


def teacher_deltas(ctx: AnalysisRun, targets: Sequence[str]) -> dict[str, Delta] | None:
    """Each target's teacher update, or None unless there are >= 2 targets and every one has a
    teacher with a weight delta (finetuned teachers)."""
    teachers = ctx.art.get("teachers") or {}
    if len(targets) < 2 or any(not (teachers.get(t) or {}).get("delta") for t in targets):
        return None
    return {t: Delta.load(ctx.path(teachers[t]["delta"])) for t in targets}


def update_matrix(ctx: AnalysisRun) -> dict[str, Any] | None:
    """The update matrix of every same-base student entry with a student for every target (see
    the module doc); None when the run cannot support it (fewer than 2 targets, or teachers
    without weight deltas). Entries missing a target are listed under `skipped` with the reason."""
    targets = ctx.config.trait.target_list()
    t_deltas = teacher_deltas(ctx, targets)
    if t_deltas is None:
        return None
    spec = ctx.config.teacher.model
    rank = ctx.a.subspace_rank
    out: dict[str, Any] = {"targets": list(targets), "rank": rank, "students": {}, "skipped": {}}
    for name, by_target in ctx.art.get("students_by_target", {}).items():
        if ctx.spec_of(name) != spec:
            out["skipped"][name] = f"its base {ctx.spec_of(name)} is not the teachers' ({spec}): no shared tensors"
            continue
        seeds = _complete(by_target, targets)
        if seeds is None:
            out["skipped"][name] = "not every target has a student with a common seed"
            continue
        cos = np.zeros((len(seeds), len(targets), len(targets)))
        share = np.zeros_like(cos)
        chance = np.zeros_like(cos)
        notes: list[str] = []
        for si, seed in enumerate(seeds):
            for ti, t in enumerate(targets):
                student = Delta.load(ctx.path(by_target[t][seed]) / "delta.safetensors")
                for ui, u in enumerate(targets):
                    c = delta_cosines(student, t_deltas[u])
                    cos[si, ti, ui] = c["overall"]
                    notes += c["notes"]
                    if rank:
                        s = span_share(student, t_deltas[u], rank=rank)
                        share[si, ti, ui], chance[si, ti, ui] = s["share"], s["baseline"]
                del student
        log.info("update matrix: %s (%d seeds x %d targets)", name, len(seeds), len(targets))
        shared = [int(sd) for sd in seeds if shares_teacher_init(ctx, name, sd)]
        own = [i for i, sd in enumerate(seeds) if int(sd) not in shared]
        entry = {"seeds": [int(s) for s in seeds], "shared_init_seeds": shared,
                 "cosine": matched_contrast(cos), "notes": sorted(set(notes))}  # fmt: skip
        if rank:
            entry["span_share"] = matched_contrast(share) | {"baseline": float(chance.mean())}
        if shared and own:
            entry["independent_init"] = {"seeds": [int(seeds[i]) for i in own], "cosine": matched_contrast(cos[own])}
            if rank:
                entry["independent_init"]["span_share"] = matched_contrast(share[own]) | {"baseline": float(chance[own].mean())}
        out["students"][name] = entry
    return out



def render_update_matrix(doc: ReportDoc, run: str, um: dict[str, Any]) -> None:
    doc.heading("Whose update: each student against every target's teacher update", 3)
    rows = [
        [
            "arm",
            "seeds",
            "cosine: own teacher | others",
            "own - others [CI over seeds]",
            "p (perm.)",
            f"span share (r={um.get('rank')}): own | others | chance",
            "own - others [CI]",
            "p",
        ]
    ]
    entries = []
    for name, e in um["students"].items():
        entries.append((name, e))
        if e.get("independent_init"):  # the seeds whose LoRA init is not the teachers'
            entries.append((f"{name}, own-init seeds", e["independent_init"]))
    for name, e in entries:
        c, sh = e["cosine"], e.get("span_share")
        row = [name, ", ".join(map(str, e["seeds"])), f"{fmt(c['matched'])} | {fmt(c['mismatched'])}",
               fmt_est(c["contrast"]), fmt(c["contrast"]["p"])]  # fmt: skip
        row += ([f"{fmt(sh['matched'])} | {fmt(sh['mismatched'])} | {fmt(sh['baseline'])}", fmt_est(sh["contrast"]),
                 fmt(sh["contrast"]["p"])] if sh else ["n/a", "n/a", "n/a"])  # fmt: skip
        rows.append(row)
    doc.table(rows, [1.6, 0.8, 1.9, 2.2, 0.8, 2.4, 2.2, 0.8])
    doc.para(f"Each target's student update (targets {', '.join(um['targets'])}) against each target's "
             "finetuned-teacher update: the cosine over all shared weights, and the share of the student's "
             "update inside the teacher's top singular span. Own - others is the mean over the matrix "
             "diagonal minus the mean off it, per seed, with a t-interval over seeds; p is exact over "
             "relabellings of the targets of the seed-mean matrix. A direction every finetune of the base "
             "shares raises own and others alike; only the difference says the student followed its own "
             "teacher. In runs made before teachers had a seed of their own, they trained LoRA with the run's "
             "seed: a LoRA student of that seed can start from their A matrices, which raises its cosines with "
             "every teacher by construction; the own-init rows leave those seeds out.")  # fmt: skip


ANALYSIS = Analysis(
    name="update_matrix", render=render_update_matrix, report_when_absent=False, title="Whose update", compute=update_matrix,
    needs="every target's teacher delta and its students' deltas",
    absent="needs >= 2 targets (trait.targets) whose teachers have weight deltas (teacher.mode = 'finetuned')",
)  # fmt: skip
