"""Gradient alignment: at each student's init, does the descent direction of its own training
loss (hard labels, or its teacher's soft labels where it distils) point toward its base's
teacher update? The gradients are a cached stage per student."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from interp.analysis.first_order import LOSS_SETTINGS
from interp.analysis.reader import AnalysisRun
from interp.analysis.trajectories import imitation_alignment
from interp.analysis.unit import Analysis, figure_render
from interp.analysis.update_alignment import no_teacher_delta
from interp.lm.delta import Delta
from interp.lm.models import Variant
from interp.plots import err, num, save


def gradient_alignment(ctx: AnalysisRun) -> dict[str, Any]:
    """At each student's init: does the descent direction of its own training loss (hard labels,
    or its teacher's soft labels where it distils) point toward its base's teacher?"""
    out = {}
    for name, spec, t_path in ctx.students_with_teacher():
        s = ctx.student_cfg(name)
        settings = s.settings(ctx.config.train)
        seed = ctx.config.seeds_of(s)[0]
        params = {"student": name, "base": spec, "teacher_delta": Variant(spec, delta_path=t_path).identity(),
                  "data": ctx.art["data"][ctx.students[name]["data"]],  # the folder name carries its key
                  "batches": ctx.a.gradient_batches, "batch_size": ctx.a.gradient_batch_size,
                  "n_boot": ctx.a.n_boot, "seed": ctx.cfg["seed"]}  # fmt: skip
        if settings.objective == "distill":  # keyed only when on, so hard-label stages keep their keys
            params["loss"] = {k: getattr(settings, k) for k in LOSS_SETTINGS} | {"row_seed": seed}
        res = ctx.run.compute_json(
            f"analysis/gradient/{name}", params, filename="gradient.json",
            make=lambda name=name, seed=seed, t_path=t_path: imitation_alignment(
                ctx, name, seed, None, Delta.load(t_path).to_dense()),
        )  # fmt: skip
        gc.collect()
        o = res["overall"]
        out[name] = {
            "against": f"teacher:{spec}", "data": ctx.students[name]["data"], "cos": o["cos"],
            "cos_ci": o["cos_ci"], "frac_positive": o["frac_positive"], "pooled_cos": o["pooled_cos"],
            "groups": {g: {k: v[k] for k in ("cos_ci", "frac_positive", "pooled_cos")}
                       for g, v in res["groups"].items() if g in ("attention", "mlp")},
            "sign_convention": res["sign_convention"],
        }  # fmt: skip
    return {"datasets": out}




def gradient_alignment_figure(datasets: dict[str, Any], path: Path) -> Path:
    """Per-batch cos(-gradient, teacher delta) at each student's init, per dataset: the
    batches as points, their mean with CI as a bar."""
    names = list(datasets)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(names), 3.6))
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for i, n in enumerate(names):
        d = datasets[n]
        cos = np.array([num(c) for c in d.get("cos") or []])
        ax.scatter(i + rng.uniform(-0.15, 0.15, cos.size), cos, s=12, alpha=0.6, color="C0")
        m, lo, hi = err(d.get("cos_ci"))
        ax.errorbar(i + 0.3, m, yerr=[[lo], [hi]], fmt="D", color="C3", capsize=4)
        fp = d.get("frac_positive")
        if fp is not None:
            ax.annotate(f"{100 * fp:.0f}% > 0", (i, 1.02), xycoords=("data", "axes fraction"),
                        ha="center", fontsize=7)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)),
                  [f"{n}\n({datasets[n].get('data', '?')} data)" for n in names], fontsize=8)  # fmt: skip
    ax.set_xlim(-0.6, len(names) - 0.3)
    ax.set_ylabel("cos(-gradient, teacher delta) per batch")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def _gradient_alignment_caption(section: dict[str, Any]) -> str:
    return ("At each student's initialisation, cosine between the descent direction of the "
     "imitation loss on one batch of its training data and the teacher's update. Dots: "
     "batches; diamond: mean with bootstrap CI over batches; top: share of batches with "
     "positive cosine. The theorem predicts > 0 for a same-init student on trait data.")  # fmt: skip


render_gradient_alignment = figure_render(
    "gradient_alignment", "Gradient alignment", "datasets", lambda s, p: gradient_alignment_figure(s["datasets"], p), _gradient_alignment_caption
)


ANALYSIS = Analysis(
    name="gradient_alignment", render=render_gradient_alignment, title="Gradient alignment", compute=gradient_alignment,
    needs="each student's training data and its base's teacher delta", skip=no_teacher_delta,
)  # fmt: skip
