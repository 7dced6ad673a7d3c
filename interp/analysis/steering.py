"""Steering: is the trait direction sufficient (added to the base at its best layer, it raises the
target's score) and necessary (projected out of the same-init student at every layer, against a
random direction per layer)? Paired bootstrap differences over questions.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from interp.analysis.reader import AnalysisRun
from interp.analysis.trait_direction import backend
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt, fmt_est
from interp.lm.models import Variant
from interp.lm.steer import add_direction, project_out
from interp.mech.directions import best_layer, mean_difference
from interp.stats import paired_bootstrap_diff
from interp.subliminal.evaluate import logprob_score


def steering(ctx: AnalysisRun) -> dict[str, Any]:
    """Sufficiency: add the direction to the base. Necessity: project it out of the student."""
    acts, stages = ctx.recorded
    spec = ctx.teacher_spec
    trait = ctx.trait()
    trait_a, neutral_a = acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"]
    direction = mean_difference(trait_a, neutral_a)
    layer, _ = best_layer(trait_a, neutral_a)
    student = next(
        (n for n in ctx.students if ctx.spec_of(n) == spec and ctx.students[n]["data"] == "trait"),
        None,
    )
    params = {
        "layer": layer,
        "scale": ctx.a.steering_scale,
        "student": student,
        "eval": ctx.cfg["eval"],
        "trait": ctx.cfg["trait"],  # target and candidates
        "seed": ctx.cfg["seed"],
    }
    inputs = {k: stages[k] for k in (f"prompted:{spec}", f"base:{spec}", student) if k in stages}
    from interp.subliminal.evaluate import EvalConfig

    settings, eval_seed = EvalConfig(**ctx.cfg["eval"]), ctx.cfg["seed"]

    def make() -> dict[str, Any]:
        model, tok = Variant(spec).load(ctx.device, ctx.dtype)
        base = logprob_score(model, tok, trait, settings, seed=eval_seed)
        with add_direction(model, layer, direction[layer], ctx.a.steering_scale):
            steered = logprob_score(model, tok, trait, settings, seed=eval_seed)
        res = {
            "layer": layer,
            "scale": ctx.a.steering_scale,
            "sufficiency": _pair(base, steered, "base", "steered"),
        }
        if student:
            seed = sorted(ctx.art["students"][student])[0]
            model, tok = Variant(spec, delta_path=ctx.student_delta(student, seed)).load(
                ctx.device, ctx.dtype
            )
            plain = logprob_score(model, tok, trait, settings, seed=eval_seed)
            all_layers = list(range(direction.shape[0]))
            with project_out(model, all_layers, {i: direction[i] for i in all_layers}):
                ablated = logprob_score(model, tok, trait, settings, seed=eval_seed)
            # Specificity control: removing any one direction from every layer perturbs the
            # model; a random direction per layer shows how much of the drop is generic.
            gen = torch.Generator().manual_seed(ctx.cfg["seed"])
            rand = {i: torch.randn(direction.shape[1], generator=gen) for i in all_layers}
            with project_out(model, all_layers, rand):
                random_ablated = logprob_score(model, tok, trait, settings, seed=eval_seed)
            res["necessity"] = {
                "student": f"{student}/seed{seed}",
                **_pair(plain, ablated, "unablated", "ablated"),
                "random_direction": _pair(plain, random_ablated, "unablated", "ablated"),
            }
        del model
        gc.collect()
        return res

    return ctx.run.compute_json("analysis/steering", params, make, inputs, filename="steering.json")


def _pair(a: dict, b: dict, na: str, nb: str) -> dict[str, Any]:
    keep = ("mean", "lo", "hi", "n")
    diff = paired_bootstrap_diff(b["per_question"], a["per_question"]).to_dict()
    return {na: {k: a[k] for k in keep}, nb: {k: b[k] for k in keep}, "diff": diff}


def render_steering(doc: ReportDoc, run: str, st: dict[str, Any]) -> None:
    doc.heading("Steering", 3)
    rows = [["test", "model", "before [CI]", "after [CI]", "difference [CI]"]]
    suf = st.get("sufficiency") or {}
    if suf:
        rows.append([f"sufficiency: add the direction at layer {fmt(st.get('layer'))} x "
                     f"{fmt(st.get('scale'))}", "base", fmt_est(suf.get("base")),
                     fmt_est(suf.get("steered")), fmt_est(suf.get("diff"))])  # fmt: skip
    nec = st.get("necessity") or {}
    if nec:
        rows.append(["necessity: project the direction out of every layer", nec.get("student"),
                     fmt_est(nec.get("unablated")), fmt_est(nec.get("ablated")),
                     fmt_est(nec.get("diff"))])  # fmt: skip
        rnd = nec.get("random_direction") or {}
        if rnd:
            rows.append(["control: project a random direction out of every layer", nec.get("student"),
                         fmt_est(rnd.get("unablated")), fmt_est(rnd.get("ablated")),
                         fmt_est(rnd.get("diff"))])  # fmt: skip
    doc.table(rows, [2.6, 1.2, 1.6, 1.6, 1.6])
    doc.para("Log-prob score before and after the intervention, paired bootstrap CI of the "
             "difference over questions. Sufficiency: steering the base should raise it; "
             "necessity: ablating the direction should lower the student's score.")  # fmt: skip


ANALYSIS = Analysis(name="steering", render=render_steering, title="Steering", compute=steering,
                    needs="activations of the teacher's base and prompted base; the same-init student",
                    extras=backend)  # fmt: skip
