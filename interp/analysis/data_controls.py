"""Data controls: gamma of every trait arm with its data variant (shuffled, masked, a subset) and
seeds, beside the in-context gamma at each k when this call computed it; each variant minus the
unmodified data on the seeds both trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.analysis.detection import missing_reason
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt, fmt_est
from interp.stats import t_interval
from interp.subliminal import matrix as mx
from interp.subliminal.experiment import label


def variant_of(s: Any) -> str:
    """A student entry's data-side variant in words ("unmodified" when none is on)."""
    parts = [f"shuffle {s.shuffle}" if s.shuffle != "none" else "", f"mask {s.mask}" if s.mask != "none" else "",
             f"subset {s.subset}" if s.subset != "all" else ""]  # fmt: skip
    return ", ".join(p for p in parts if p) or "unmodified"


def _per_seed_target_gammas(ctx: AnalysisRun, s: Any) -> dict[int, np.ndarray]:
    """seed -> per-target gamma of one trait arm, from the summary's log-odds."""
    cfg, models = ctx.config, ctx.summary["models"]
    targets = cfg.trait.target_list()
    cands = cfg.trait.candidate_list()
    cols = [cands.index(t) for t in targets]
    spec = cfg.student_model(s)
    base = np.array(models["base" if spec == cfg.teacher.model else f"base:{spec}"]["log_odds"])
    out = {}
    for seed in cfg.seeds_of(s):
        shifts = np.stack([np.array(models[label(s.name, t, targets[0], seed)]["log_odds"]) - base for t in targets])
        out[seed] = mx.per_target_gamma(shifts, cols)
    return out


def data_controls(ctx: AnalysisRun, incontext: dict[str, Any] | None) -> dict[str, Any]:
    """gamma of every trait-data arm of the run with its variant and seeds; a t-interval over
    the targets (the units of the permutation test too), so one-seed arms have one as well;
    each variant minus the unmodified arm on the seeds they share, paired by target; and the
    in-context control's gamma at each k (no finetuning)."""
    arms = ctx.summary["matrix"]["arms"]
    ci = ctx.config.eval.ci
    trait_arms = [s for s in ctx.config.students if arms.get(s.name, {}).get("gamma") is not None]
    per = {s.name: _per_seed_target_gammas(ctx, s) for s in trait_arms}
    ref = next((s for s in trait_arms if variant_of(s) == "unmodified" and s.model == "teacher"), None)
    rows = []
    for s in trait_arms:
        a, by_seed = arms[s.name], per[s.name]
        row = {"arm": s.name, "variant": variant_of(s), "model": a["model"], "seeds": ctx.config.seeds_of(s),
               "gamma": a["gamma"], "gamma_ci": a["gamma_ci"], "p_gamma": a["p_gamma"],
               "gamma_ci_targets": t_interval(np.mean(list(by_seed.values()), axis=0), ci).to_dict(),
               "own_shift": float(np.mean(a["own_shift"]))}  # fmt: skip
        if ref is not None and s is not ref:
            shared = sorted(set(by_seed) & set(per[ref.name]))
            if shared:
                d = np.mean([by_seed[sd] - per[ref.name][sd] for sd in shared], axis=0)
                row["minus_unmodified"] = t_interval(d, ci).to_dict() | {"against": ref.name, "seeds": shared}
        rows.append(row)
    for k, r in ((incontext or {}).get("by_k") or {}).items():
        rows.append({"arm": f"in-context k={k}", "variant": "no finetuning", "model": incontext["model"], "seeds": [],
                     "gamma": r["gamma"], "gamma_ci": r["gamma_ci"], "p_gamma": r["p_gamma"],
                     "own_shift": float(np.mean(r["own_shift"]))})  # fmt: skip
    return {"rows": rows, "reference": ref.name if ref else None,
            "note": ("gamma_ci: t-interval over seeds (n=1: none) for students, bootstrap over questions in "
                     "context; gamma_ci_targets: t-interval over targets of the seed-mean per-target gamma; "
                     "minus_unmodified: per-target gamma difference on shared seeds, t-interval over targets")}  # fmt: skip


def render_data_controls(doc: ReportDoc, run: str, dc: dict[str, Any]) -> None:
    doc.heading("Data controls: gamma per variant of the trait data", 3)
    rows = [["arm", "variant", "seeds", "gamma [CI over seeds]", "[CI over targets]", "p (perm.)",
             "minus unmodified [CI over targets]"]]  # fmt: skip
    for r in dc.get("rows") or []:
        t = r.get("gamma_ci_targets")
        rows.append([r["arm"], r["variant"], ", ".join(map(str, r["seeds"])) or "-", fmt_est(r["gamma_ci"]),
                     f"[{fmt(t['lo'])}, {fmt(t['hi'])}]" if t else "", fmt(r["p_gamma"]),
                     fmt_est(r.get("minus_unmodified"), missing="")])  # fmt: skip
    doc.table(rows, [2.0, 2.2, 0.9, 2.4, 1.8, 0.9, 2.4])
    doc.para("gamma: each student's shift toward its own teacher's target minus toward the other "
             "targets (log-odds vs its base, nats); CI over seeds for students (one seed: no "
             "interval) and over questions for the in-context rows, which score the base with k "
             "rows of each target's data (minus the control data's) as earlier turns, without "
             "finetuning. CI over targets: t-interval of the per-target gamma (own minus others, "
             "the units of the permutation test). p: permutation over target labels. Minus "
             f"unmodified: the per-target gamma of the variant minus that of '{dc.get('reference')}' "
             "on the seeds both trained, t-interval over targets.")  # fmt: skip


def _skip_controls(ctx: AnalysisRun) -> str | None:
    if len(ctx.config.trait.target_list()) < 2:
        return "gamma needs >= 2 targets (trait.targets)"
    return missing_reason(ctx)


# reads the in-context section when this call computed it
ANALYSIS = Analysis(name="data_controls", script="analyses/data_controls.py", render=render_data_controls, title="Data controls",
                    compute=lambda ctx: data_controls(ctx, ctx.results.get("incontext")),
                    needs="the data-control students of >= 2 targets", skip=_skip_controls)  # fmt: skip
