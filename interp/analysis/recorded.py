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
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, figure_render
from interp.extras import backend_module
from interp.fmt import fmt, fmt_est
from interp.lm.models import Variant
from interp.lm.steer import add_direction, project_out
from interp.mech.directions import best_layer, direction_cosine_ci, mean_difference
from interp.mech.probes import apply_probes, train_probes
from interp.plots import num, save
from interp.stats import paired_bootstrap_diff, wilson
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



def trait_direction_figure(students: dict[str, Any], path: Path) -> Path:
    """Per layer, cos(trait direction, student's activation shift) with its bootstrap band."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (n, d) in enumerate(students.items()):
        cos = np.array([num(c) for c in d.get("cosine") or []])
        layers = d.get("layers") or list(range(cos.size))
        ax.plot(layers, cos, marker="o", ms=3, color=f"C{i}", label=n)
        lo, hi = d.get("lo"), d.get("hi")
        if lo and hi:
            ax.fill_between(layers, [num(v) for v in lo], [num(v) for v in hi],
                            color=f"C{i}", alpha=0.2)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("cos(trait direction, student shift)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def _trait_direction_caption(section: dict[str, Any]) -> str:
    return ("Per layer, cosine between the trait direction (mean activation of the "
     "trait-prompted base minus the plain base, last prompt token, backend "
     f"{section.get('backend', '?')}) and the student's mean activation shift from its base, with a "
     "bootstrap band over prompts. Above 0 = the student moved toward the trait; compare with "
     "the control.")  # fmt: skip


render_trait_direction = figure_render(
    "trait_direction", "Trait direction", "students", lambda s, p: trait_direction_figure(s["students"], p), _trait_direction_caption
)


def probes_figure(bases: dict[str, Any], students: dict[str, Any], path: Path) -> Path:
    """Held-out probe AUROC per layer (per base model) and, per student, the share of prompts
    the probe calls trait-bearing with a Wilson 95% band."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (spec, b) in enumerate(bases.items()):
        auroc = [num(a) for a in b.get("auroc") or []]
        axes[0].plot(range(len(auroc)), auroc, marker="o", ms=3, color=f"C{i}", label=spec)
        if b.get("best_layer") is not None and auroc:
            bl = int(b["best_layer"])
            axes[0].plot([bl], [auroc[bl]], "*", ms=12, color=f"C{i}")
    axes[0].axhline(0.5, color="gray", ls=":", label="chance")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("probe AUROC (held out)")
    axes[0].legend(fontsize=7)
    for i, (n, s) in enumerate(students.items()):
        share = [num(v) for v in s.get("share_trait") or []]
        layers = list(range(len(share)))
        ls = ":" if n.startswith("base:") else "-"
        axes[1].plot(layers, share, marker="o", ms=3, ls=ls, color=f"C{i}", label=n)
        if s.get("n"):
            band = [wilson(v, int(s["n"])) for v in share]
            axes[1].fill_between(layers, [b[0] for b in band], [b[1] for b in band],
                                 color=f"C{i}", alpha=0.15)  # fmt: skip
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("layer")
    axes[1].set_ylabel("share classified trait-bearing")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, path)


def _probes_caption(section: dict[str, Any]) -> str:
    return ("Left: held-out AUROC per layer of logistic probes separating the trait-prompted "
     "base from the plain base (star = best layer, 0.5 = chance; a single split, no CI). Right: "
     "share of each student's prompts the probe of its base calls trait-bearing, with a "
     "Wilson 95% band (dotted: the base itself on number prompts).")  # fmt: skip


render_probes = figure_render(
    "probes", "Probes", "bases", lambda s, p: probes_figure(s["bases"], s.get("students") or {}, p), _probes_caption
)


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


def _backend(ctx: AnalysisRun) -> tuple[str, ...]:
    return tuple(backend_module(ctx.a.backend))


def _backend_and_sklearn(ctx: AnalysisRun) -> tuple[str, ...]:
    return (*_backend(ctx), "sklearn")


ANALYSES = [
    Analysis(name="trait_direction", render=render_trait_direction, title="Trait direction", compute=trait_direction,
             needs="activations of each base, prompted base and student", extras=_backend),
    Analysis(name="probes", render=render_probes, title="Probes", compute=probes,
             needs="activations of each base, prompted base and student", extras=_backend_and_sklearn),
    Analysis(name="steering", render=render_steering, title="Steering", compute=steering,
             needs="activations of the teacher's base and prompted base; the same-init student",
             extras=_backend),
]  # fmt: skip
