"""Update alignment: does each student's weight update point along its base's teacher update?

Per student and seed: the cosine of the two deltas (overall, per layer, per module), the norm
ratio, and (with `[analysis] subspace_rank`) the principal angles and the share of the
student's update inside the teacher's top singular span, against its chance baseline. Needs a
teacher with a weight delta (teacher.mode = 'finetuned').
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from interp.analysis.reader import AnalysisRun, shares_teacher_init
from interp.analysis.unit import Analysis, figure_render
from interp.lm.delta import Delta
from interp.mech.alignment import (
    aggregate_over_seeds,
    delta_cosines,
    delta_subspace_angles,
    span_share,
)
from interp.plots import err, heatmap, num, save


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




def update_alignment_figure(students: dict[str, Any], path: Path) -> Path:
    """cos(student delta, teacher delta): per layer and per module (means over seeds, as
    heatmaps) and overall (mean over seeds with its CI)."""
    names = list(students)
    n_layers = max((len(s.get("per_layer_mean") or []) for s in students.values()), default=0)
    layer_mat = np.full((len(names), n_layers), np.nan)
    for i, n in enumerate(names):
        vals = [num(v) for v in students[n].get("per_layer_mean") or []]
        layer_mat[i, : len(vals)] = vals
    modules = sorted({m for s in students.values() for m in (s.get("per_module_mean") or {})})
    mod_mat = np.array(
        [[num((students[n].get("per_module_mean") or {}).get(m)) for m in modules] for n in names]
    ).reshape(len(names), len(modules))
    # Two rows so that at page width the labels stay legible: layers on top (they can be
    # many), modules and the overall cosine with its CI below.
    fig = plt.figure(figsize=(9, 2.6 + 0.7 * len(names)))
    gs = fig.add_gridspec(2, 2, width_ratios=[1.3, 1])
    axes = [fig.add_subplot(gs[0, :]), fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])]
    im = heatmap(axes[0], layer_mat, [str(i) for i in range(n_layers)], names)
    axes[0].set_xlabel("layer")
    axes[0].set_title("per layer (mean over seeds)", fontsize=9)
    fig.colorbar(im, ax=axes[0], label="cosine", fraction=0.04)
    im = heatmap(axes[1], mod_mat, modules, names)
    axes[1].set_xlabel("module")
    axes[1].set_title("per module (mean over seeds)", fontsize=9)
    fig.colorbar(im, ax=axes[1], label="cosine", fraction=0.08)
    ax = axes[2]
    y = np.arange(len(names))[::-1]
    for yi, n in zip(y, names):
        m, lo, hi = err(students[n].get("overall"))
        ax.errorbar(m, yi, xerr=[[lo], [hi]], fmt="o", capsize=3, color="C0")
        seeds = [num(e.get("overall")) for e in (students[n].get("per_seed") or {}).values()]
        ax.plot(seeds, [yi] * len(seeds), "x", color="gray", ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("cosine (CI over seeds; x = seed)", fontsize=8)
    ax.set_title("all parameters", fontsize=9)
    return save(fig, path)


def _update_alignment_caption(section: dict[str, Any]) -> str:
    return ("Cosine between each student's weight update and its base's teacher update "
     "(dW_student vs dW_teacher, LoRA deltas merged). Heatmaps: per layer and per module, "
     "mean over seeds (red = aligned, blue = opposed, white = orthogonal); right: all "
     "parameters, mean over seeds with its t-interval, crosses = single seeds. Subliminal "
     "transmission predicts the same-init student above the control.")  # fmt: skip


render_update_alignment = figure_render(
    "update_alignment", "Update alignment", "students", lambda s, p: update_alignment_figure(s["students"], p), _update_alignment_caption
)


ANALYSIS = Analysis(
    name="update_alignment", script="analyses/update_alignment.py", render=render_update_alignment, title="Update alignment", compute=update_alignment,
    needs="each student's delta and its base's teacher delta", skip=no_teacher_delta,
)  # fmt: skip
