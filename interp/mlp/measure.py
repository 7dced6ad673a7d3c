"""Measurements on stacked parameters (one row per model) and their summaries over seeds.

Pure functions: parameter deltas, per-layer cosines, and 95% t-intervals over seeds; the
per-m summary and the printed table are built from the per-seed lists the stages store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.stats import cosine, t_interval, welch

Params = dict[str, Tensor]  # "W1": (model, d_in, d_out), "b1": (model, 1, d_out), ...


def delta(a: Params, b: Params) -> Params:
    return {k: a[k] - b[k] for k in a}


def per_layer(params: Params) -> dict[str, Float[Tensor, "model p"]]:
    """Each layer's weight and bias as one flat vector per model, plus all layers together."""
    out = {
        f"layer{i}": torch.cat([params[f"W{i}"].flatten(1), params[f"b{i}"].flatten(1)], 1)
        for i in range(1, len(params) // 2 + 1)
    }
    out["overall"] = torch.cat(list(out.values()), 1)
    return out


def delta_metrics(d_student: Params, d_teacher: Params) -> dict[str, Any]:
    """cos(dS, dT) per layer and overall, and |dS| / |dT|, per seed."""
    s, t = per_layer(d_student), per_layer(d_teacher)
    return {
        "cos": {k: finite_list(cosine(s[k], t[k])) for k in s},
        "delta_norm_ratio": finite_list(s["overall"].norm(dim=1) / t["overall"].norm(dim=1)),
    }


def finite_list(t: Tensor) -> list[float | None]:
    """Per-seed values for JSON; NaN (undefined) becomes null."""
    return [float(v) if np.isfinite(v) else None for v in t.detach().cpu().tolist()]


def ci95(values: list[float | None]) -> dict[str, Any]:
    """Mean, 95% t-interval over seeds (`stats.t_interval`) and the per-seed values themselves
    (readers test on those, not on the interval); undefined values (null) are left out and counted."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "per_seed": []}
    est = t_interval(v)
    return {"mean": est.mean, "lo": est.lo, "hi": est.hi, "n": est.n, "per_seed": v}


def summarise_m(teacher_metrics: dict[str, Any], student_metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-seed lists of one m -> means with CIs, per model kind."""
    res: dict[str, Any] = {
        "reference": {"acc": ci95(teacher_metrics["reference_acc"])},
        "teacher": {"acc": ci95(teacher_metrics["teacher_acc"])},
    }
    for kind, mt in student_metrics.items():
        if not isinstance(mt, dict):  # "permutation", "steps"
            continue
        res[kind] = {"acc": ci95(mt["acc"])}
        if "cos" in mt:  # not for CNN students: another architecture than their teacher's
            res[kind]["cos_dS_dT"] = {layer: ci95(v) for layer, v in mt["cos"].items()}
            res[kind]["delta_norm_ratio"] = ci95(mt["delta_norm_ratio"])
        if "grad_dot" in mt:
            # An exactly zero gradient (m = 1, aux only: KL over one logit is identically 0)
            # has no sign: the fraction counts only seeds whose first step moves at all.
            dots = [d for d in mt["grad_dot"] if d is not None and d != 0.0]
            res[kind]["grad_dot"] = ci95(mt["grad_dot"])
            res[kind]["grad_cos"] = ci95(mt["grad_cos"])
            res[kind]["adam_step_cos"] = ci95(mt["adam_step_cos"])
            res[kind]["grad_dot_positive_fraction"] = (
                float(np.mean([d > 0 for d in dots])) if dots else None
            )
    for kind in list(res):  # every other init kind against the cross-init students, per target
        init_kind, _, target = kind.partition("-init/")
        cross = student_metrics.get(f"cross-init/{target}")
        if target and init_kind != "cross" and isinstance(cross, dict):
            res[kind]["acc_minus_cross"] = minus(student_metrics[kind]["acc"], cross["acc"])
    return res


def minus(a: list[float | None], b: list[float | None]) -> dict[str, Any]:
    """mean(a) - mean(b) over seeds with its 95% Welch interval and p (`stats.welch`)."""
    c = welch([x for x in a if x is not None], [x for x in b if x is not None])

    def num(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return {"mean": num(c.effect), "lo": num(c.lo), "hi": num(c.hi), "p": num(c.p), "n": c.n}


def table_rows(per_m: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (m, model kind) for the CLI's printed table."""
    rows = []
    for m, res in per_m.items():
        for kind, r in res.items():
            rows.append(
                {
                    "m": int(m),
                    "model": kind,
                    "acc": r["acc"]["mean"],
                    "acc_lo": r["acc"]["lo"],
                    "acc_hi": r["acc"]["hi"],
                    "cos_dS_dT": r.get("cos_dS_dT", {}).get("overall", {}).get("mean"),
                    "grad_cos": r.get("grad_cos", {}).get("mean"),
                    "grad_pos_frac": r.get("grad_dot_positive_fraction"),
                }
            )
    return rows
