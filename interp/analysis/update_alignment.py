"""Update alignment: does each student's weight update point along its base's teacher update?

Per student and seed: the cosine of the two deltas (overall, per layer, per module), the norm
ratio, and (with `[analysis] subspace_rank`) the principal angles and the share of the
student's update inside the teacher's top singular span, against its chance baseline. Needs a
teacher with a weight delta (teacher.mode = 'finetuned').
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.analysis.alignment import (
    aggregate_over_seeds,
    delta_cosines,
    delta_subspace_angles,
    span_share,
)
from interp.analysis.reader import AnalysisRun, shares_teacher_init
from interp.analysis.unit import Analysis
from interp.lm.delta import Delta


def no_teacher_delta(ctx: AnalysisRun) -> str | None:
    """Why a run has no teacher update to compare with (a prompted or steered teacher), or None."""
    if ctx.art.get("teacher_deltas"):
        return None
    mode = ctx.art.get("teacher_mode")
    where = "a steering vector" if mode == "steered" else "a system prompt"
    return f"teacher.mode = '{mode}': the trait lives in {where}, there is no teacher delta"


def update_alignment(ctx: AnalysisRun) -> dict[str, Any]:
    out = {}
    for name, spec, t_path in ctx.students_with_teacher():
        teacher = Delta.load(t_path)
        per_seed = {}
        for seed in ctx.art["students"][name]:
            student = Delta.load(ctx.student_delta(name, seed))
            cos = delta_cosines(student, teacher)
            entry = {
                "overall": cos["overall"], "per_layer": cos["per_layer"], "per_module": cos["per_module"],
                "norm_ratio": cos["norms"]["ratio"], "notes": cos["notes"],
                "shares_teacher_init": shares_teacher_init(ctx, name, seed),
            }  # fmt: skip
            if ctx.a.subspace_rank:
                angles = delta_subspace_angles(student, teacher, rank=ctx.a.subspace_rank)
                entry["subspace"] = angles.to_dict()["per_module"]
                entry["span_share"] = span_share(student, teacher, rank=ctx.a.subspace_rank)
            per_seed[seed] = entry
        layers = sorted({int(k) for e in per_seed.values() for k in e["per_layer"]})
        modules = sorted({k for e in per_seed.values() for k in e["per_module"]})
        out[name] = {
            "against": f"teacher:{spec}",
            "overall": aggregate_over_seeds([e["overall"] for e in per_seed.values()]).to_dict(),
            # the linear picture: share of the student's update inside the teacher's top singular span
            "span_share": aggregate_over_seeds([e["span_share"]["share"] for e in per_seed.values()]).to_dict()
            | {"baseline": float(np.mean([e["span_share"]["baseline"] for e in per_seed.values()]))}
            if ctx.a.subspace_rank else None,
            "per_seed": per_seed,
            "per_layer_mean": [float(np.nanmean([_get(e["per_layer"], i) for e in per_seed.values()])) for i in layers],
            "per_module_mean": {m: float(np.nanmean([e["per_module"].get(m, np.nan) for e in per_seed.values()])) for m in modules},
        }  # fmt: skip
    return {"students": out}


def _get(d: dict, layer: int) -> float:
    return d.get(layer, d.get(str(layer), float("nan")))



ANALYSIS = Analysis(
    name="update_alignment", title="Update alignment", compute=update_alignment,
    needs="each student's delta and its base's teacher delta", skip=no_teacher_delta,
)  # fmt: skip
