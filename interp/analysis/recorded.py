"""The analyses of recorded activations: each base with and without the trait's system prompt,
and each student (first seed), at the last prompt token (`AnalysisRun.recorded`, shared).

- trait_direction: the cosine between each student's mean shift from its base and the trait
  direction (prompted minus plain base), per layer, with a bootstrap interval and the control
  student's cosine beside it;
- probes: a linear probe for the trait trained on the prompted vs plain base, applied to each
  student and to the base on number prompts;
- steering: sufficiency (the trait direction added to the base at its best layer raises the
  target's score) and necessity (projected out of the same-init student at every layer, against
  a random direction per layer).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import torch

from interp.analysis.directions import best_layer, direction_cosine_ci, mean_difference
from interp.analysis.probes import apply_probes, train_probes
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis
from interp.extras import backend_module
from interp.lm.models import Variant
from interp.lm.steer import add_direction, project_out
from interp.stats import paired_bootstrap_diff
from interp.store.stages import write_json
from interp.subliminal.evaluate import logprob_score


def trait_direction(ctx: AnalysisRun) -> dict[str, Any]:
    acts = ctx.recorded[0]
    out, layers = {}, {}
    for name in ctx.students:
        spec = ctx.spec_of(name)
        trait_a, neutral_a = acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"]
        control = [
            c
            for c in ctx.students
            if c != name and ctx.spec_of(c) == spec and ctx.students[c]["data"] == "control"
        ]
        res = direction_cosine_ci(
            trait_a, neutral_a, acts[name]["eval"], neutral_a, n_boot=ctx.a.n_boot, seed=ctx.cfg["seed"],
            control_acts=acts[control[0]]["eval"] if control and name not in control else None,
        )  # fmt: skip
        out[name] = {"against": f"base:{spec}", **res}
        layers[spec] = trait_a.shape[1]
    return {"backend": ctx.a.backend, "prompt_set": "eval", "n_layers": layers, "students": out}


def probes(ctx: AnalysisRun) -> dict[str, Any]:
    acts = ctx.recorded[0]
    bases, students = {}, {}
    for spec in sorted({ctx.spec_of(n) for n in ctx.students}):
        res = train_probes(
            acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"], seed=ctx.cfg["seed"]
        )
        bases[spec] = res.to_dict()
        for name in ctx.students:
            if ctx.spec_of(name) == spec:
                students[name] = {
                    "against": f"base:{spec}",
                    **apply_probes(res, acts[name]["eval"]),
                }
        students[f"base:{spec}"] = {
            "against": f"base:{spec}",
            **apply_probes(res, acts[f"base:{spec}"]["numbers"]),
        }
    return {
        "bases": bases,
        "students": students,
        "note": "base:<spec> rows apply the probe to the base on number prompts",
    }


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
    st = ctx.run.stage("analysis/steering", params, inputs)
    if not st.done:
        from interp.subliminal.evaluate import EvalConfig

        settings, eval_seed = EvalConfig(**ctx.cfg["eval"]), ctx.cfg["seed"]
        with st.running() as folder:
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
            write_json(folder / "steering.json", res)
            del model
            gc.collect()
    return json.loads((st.path / "steering.json").read_text())


def _pair(a: dict, b: dict, na: str, nb: str) -> dict[str, Any]:
    keep = ("mean", "lo", "hi", "n")
    diff = paired_bootstrap_diff(b["per_question"], a["per_question"]).to_dict()
    return {na: {k: a[k] for k in keep}, nb: {k: b[k] for k in keep}, "diff": diff}


def _backend(ctx: AnalysisRun) -> tuple[str, ...]:
    return tuple(backend_module(ctx.a.backend))


def _backend_and_sklearn(ctx: AnalysisRun) -> tuple[str, ...]:
    return (*_backend(ctx), "sklearn")


ANALYSES = [
    Analysis(name="trait_direction", title="Trait direction", compute=trait_direction,
             needs="activations of each base, prompted base and student", extras=_backend),
    Analysis(name="probes", title="Probes", compute=probes,
             needs="activations of each base, prompted base and student", extras=_backend_and_sklearn),
    Analysis(name="steering", title="Steering", compute=steering,
             needs="activations of the teacher's base and prompted base; the same-init student",
             extras=_backend),
]  # fmt: skip
