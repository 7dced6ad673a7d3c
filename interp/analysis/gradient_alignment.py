"""Gradient alignment: at each student's init, does the descent direction of its own training
loss (hard labels, or its teacher's soft labels where it distils) point toward its base's
teacher update? The gradients are a cached stage per student."""

from __future__ import annotations

import gc
import json
from typing import Any

from interp.analysis.first_order import LOSS_SETTINGS
from interp.analysis.reader import AnalysisRun
from interp.analysis.trajectories import imitation_alignment
from interp.analysis.unit import Analysis
from interp.analysis.update_alignment import no_teacher_delta
from interp.lm.delta import Delta
from interp.lm.models import Variant
from interp.store.stages import write_json


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
        st = ctx.run.stage(f"analysis/gradient/{name}", params)
        if not st.done:
            with st.running() as folder:
                res = imitation_alignment(ctx, name, seed, None, Delta.load(t_path).to_dense())
                write_json(folder / "gradient.json", res)
                gc.collect()
        res = json.loads((st.path / "gradient.json").read_text())
        o = res["overall"]
        out[name] = {
            "against": f"teacher:{spec}", "data": ctx.students[name]["data"], "cos": o["cos"],
            "cos_ci": o["cos_ci"], "frac_positive": o["frac_positive"], "pooled_cos": o["pooled_cos"],
            "groups": {g: {k: v[k] for k in ("cos_ci", "frac_positive", "pooled_cos")}
                       for g, v in res["groups"].items() if g in ("attention", "mlp")},
            "sign_convention": res["sign_convention"],
        }  # fmt: skip
    return {"datasets": out}



ANALYSIS = Analysis(
    name="gradient_alignment", title="Gradient alignment", compute=gradient_alignment,
    needs="each student's training data and its base's teacher delta", skip=no_teacher_delta,
)  # fmt: skip
