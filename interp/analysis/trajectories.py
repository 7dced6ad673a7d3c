"""How the student moves, step by step (`[analysis] trajectories = true`).

Students that save light checkpoints (`checkpoint_every = N`, per `[[students]]` entry or in
`[train]`: the LoRA factors every N optimiser steps, in the student's stage folder) are read
back at each checkpoint, from step 0 (the base) to the end:
- trait score: p(target) among the candidates on the run's evaluation questions (bootstrap CI
  over questions), the primary target's student;
- learned vector: v_S(layer) = mean resid_post(student) - mean resid_post(base) at the last
  token of general prompts (no system prompt, never the evaluation questions), and its cosine
  with the teacher's trait vector v_T(layer) = prompted - plain base on the same prompts (the
  emergence measure of the steering-vector account); the mean over layers, fixed in advance;
- update cosine with the teacher's update, where the run has a teacher delta; and where every
  target has a finetuned teacher and a checkpointed student, the update matrix at each step
  (each target's student against every target's teacher: own minus others, its exact
  permutation p over target labels and a t-interval over targets; `update_matrix`);
- imitation-gradient alignment, where the run has a teacher delta: at each checkpoint, the
  cosine of the descent direction of the student's own training loss (its first
  `gradient_batches` x `gradient_batch_size` rows, soft labels where it distils) with the
  teacher's update, with a bootstrap CI over batches (step 0 is `gradient_alignment`'s measure);
- gamma over the run's targets at each step, where the entry saved checkpoints for every
  target (its first seed): each target's student scored on every candidate, its shift from the
  base, gamma with its exact permutation p over target labels and a t-interval over targets
  (the final step is the run's own gamma for that seed).
Pure helpers here; `trajectories` is the driver over a run's artifacts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, figure_render, off
from interp.analysis.update_matrix import matched_contrast, teacher_deltas
from interp.extras import backend_module
from interp.lm.delta import Delta
from interp.lm.models import Variant, completion_suffix, format_prompt
from interp.lm.record import residual_stream
from interp.mech.alignment import delta_cosines
from interp.mech.directions import layer_cosines, mean_difference
from interp.mech.gradient import descent_alignment, iter_imitation_gradients
from interp.plots import err, num, save
from interp.stats import t_interval
from interp.store.stages import read_json
from interp.subliminal import matrix as mx
from interp.subliminal.evaluate import logprob_score
from interp.subliminal.teacher import GENERAL_PROMPTS

log = logging.getLogger("interp")
_STEP = re.compile(r"delta-step(\d+)\.safetensors$")


def checkpoints(stage_dir: Path) -> list[tuple[int, Path]]:
    """(step, delta file) of a student's saved checkpoints and its final delta, by step; the
    final delta is listed once (a checkpoint at the last step is the same update)."""
    found = sorted((int(m.group(1)), p) for p in (stage_dir / "checkpoints").glob("delta-step*.safetensors")
                   if (m := _STEP.search(p.name)))  # fmt: skip
    steps = int(read_json(stage_dir / "train_log.json")["steps"])
    if not found or found[-1][0] != steps:
        found.append((steps, stage_dir / "delta.safetensors"))
    return found


def vector_cosines(student: torch.Tensor, base: torch.Tensor, v_teacher: torch.Tensor) -> dict[str, Any]:
    """cos(v_S(layer), v_T(layer)) with v_S = mean(student) - mean(base) ([n, layer, d] acts);
    nan where v_S is zero (the base itself); the mean over layers ignores nan."""
    cos = layer_cosines(mean_difference(student, base).float(), v_teacher.float()).numpy()
    mean = float(np.nanmean(cos)) if np.isfinite(cos).any() else float("nan")
    return {"mean": mean, "per_layer": [float(c) for c in cos]}


def _student_dirs(ctx: AnalysisRun) -> dict[str, Path]:
    """Each student entry's primary-target, first-seed stage folder, for those with checkpoints."""
    out = {}
    for name, seeds in ctx.art["students"].items():
        d = _first_seed_dir(ctx, seeds)
        if (d / "checkpoints").is_dir():
            out[name] = d
    return out


def _first_seed_dir(ctx: AnalysisRun, seeds: dict[str, str]) -> Path:
    return ctx.path(seeds[sorted(seeds, key=int)[0]])


def _checkpointed_dirs(ctx: AnalysisRun, name: str, targets: list[str]) -> dict[str, Path] | None:
    """Entry `name`'s first-seed stage folder per target; None when there are < 2 targets or a
    target has no student or its student saved no checkpoints."""
    by_t = ctx.art.get("students_by_target", {}).get(name, {})
    if len(targets) < 2 or any(t not in by_t for t in targets):
        return None
    dirs = {t: _first_seed_dir(ctx, by_t[t]) for t in targets}
    return None if any(not (d / "checkpoints").is_dir() for d in dirs.values()) else dirs


def gamma_steps(ctx: AnalysisRun, name: str, spec: str) -> list[dict[str, Any]] | None:
    """gamma over the run's targets at each saved step of entry `name` (see the module doc);
    None when the run has < 2 targets or a target's student saved no checkpoints."""
    m = ctx.summary.get("matrix") or {}
    targets, cands = m.get("targets", []), m.get("candidates", [])
    dirs = _checkpointed_dirs(ctx, name, targets)
    if dirs is None:
        return None
    base_key = "base" if spec == ctx.teacher_spec else f"base:{spec}"
    base = np.array(ctx.summary["models"][base_key]["log_odds"])
    teacher = np.array(m["teacher_shift"])
    cols = [cands.index(t) for t in targets]
    shifts: dict[int, list[np.ndarray]] = {}
    for t in targets:
        for step, path in checkpoints(dirs[t]):
            model, tok = Variant(spec, delta_path=path).load(ctx.device, ctx.dtype)
            sc = logprob_score(model, tok, ctx.trait_for(t), ctx.config.eval, seed=ctx.cfg["seed"])
            lo = dict(zip(sc["candidates"], sc["log_odds"]))  # each trait lists its candidates its own way
            shifts.setdefault(step, []).append(np.array([lo[c] for c in cands]) - base)
    rows = [{"step": 0, "gamma": 0.0, "p_gamma": None, "gamma_ci": None}]  # the base: no shift
    for step, per in sorted(shifts.items()):
        if len(per) != len(targets):  # a target's student saved other steps: not comparable
            continue
        s = np.stack(per)
        test = mx.permutation_test(s, teacher, cols, seed=ctx.cfg["seed"])
        rows.append({"step": step, "gamma": test.gamma, "p_gamma": test.p_gamma,
                     "gamma_ci": t_interval(mx.per_target_gamma(s, cols).tolist(), ctx.config.eval.ci).to_dict()})  # fmt: skip
        log.info("trajectory %s step %d: gamma %.4f (p %.4f)", name, step, test.gamma, test.p_gamma)
    return rows


def update_steps(ctx: AnalysisRun, name: str) -> list[dict[str, Any]] | None:
    """The update matrix at each saved step of entry `name` (its first seed; see the module doc);
    None unless every target has a teacher delta and a checkpointed student."""
    targets = ctx.config.trait.target_list()
    dirs = _checkpointed_dirs(ctx, name, targets)
    t_deltas = teacher_deltas(ctx, targets) if dirs is not None else None
    if t_deltas is None:
        return None
    cells: dict[int, list[list[float]]] = {}
    for t in targets:
        for step, path in checkpoints(dirs[t]):
            student = Delta.load(path)
            cells.setdefault(step, []).append([delta_cosines(student, t_deltas[u])["overall"] for u in targets])
    rows = []
    for step, mat in sorted(cells.items()):
        if len(mat) != len(targets):
            continue
        c = np.array(mat)
        res = matched_contrast(c[None])
        per_target = mx.per_target_gamma(c, range(len(targets)))  # own minus mean of the others, per row
        rows.append({"step": step, "own": res["matched"], "others": res["mismatched"],
                     "contrast": res["contrast"]["mean"], "p": res["contrast"]["p"],
                     "contrast_ci": t_interval(per_target, ctx.config.eval.ci).to_dict()})  # fmt: skip
    return rows


def imitation_alignment(ctx: AnalysisRun, name: str, seed: int, path: Path | None,
                        teacher: dict[str, torch.Tensor]) -> dict[str, Any]:  # fmt: skip
    """`descent_alignment` of student entry `name` at its checkpoint `path` (None: its init): the
    gradient of its own training loss (hard labels, or KL to its teacher's soft labels where it
    distils) on its first `gradient_batches` x `gradient_batch_size` rows of the primary target's
    data, for `seed`, against the teacher's update. Shared by `gradient_alignment` (at the init)
    and the trajectories (at every checkpoint)."""
    from interp.analysis.detection import data_stage, run_teachers
    from interp.subliminal.stages import student_rows, training_inputs

    s = ctx.student_cfg(name)
    t = ctx.trait().target
    teachers, control = run_teachers(ctx)
    source = control if s.data == "control" else teachers[t]
    settings = s.settings(ctx.config.train)
    rows = student_rows(ctx.config, ctx.run, s, t, seed, data_stage(ctx, "control" if s.data == "control" else t),
                        source, control)[0]  # fmt: skip
    rows = rows[: ctx.a.gradient_batches * ctx.a.gradient_batch_size]
    distill = settings.objective == "distill"
    model, tok, examples, soft = training_inputs(ctx.spec_of(name), rows, source if distill else None, ctx.device,
                                                 ctx.dtype, settings.default_system_prompt)  # fmt: skip
    if path is not None:
        Delta.load(path).apply(model)
    grads = iter_imitation_gradients(
        model, tok, examples, list(teacher), ctx.a.gradient_batch_size, completion_suffix(tok),
        micro_batch_size=settings.micro_batch_size, max_len=settings.max_seq_len,
        max_batches=ctx.a.gradient_batches, settings=settings, teacher=soft,
    )  # fmt: skip
    return descent_alignment(grads, teacher, n_boot=ctx.a.n_boot, seed=ctx.cfg["seed"])


def _gradient_cos(ctx: AnalysisRun, name: str, seed: int, path: Path | None, teacher: dict[str, torch.Tensor]) -> dict[str, Any]:
    o = imitation_alignment(ctx, name, seed, path, teacher)["overall"]
    return {k: o[k] for k in ("cos", "cos_ci", "frac_positive", "pooled_cos")}


def _acts(ctx: AnalysisRun, model: Any, tok: Any, system: str | None, prompts: list[str]) -> torch.Tensor:
    texts = [format_prompt(tok, u, system) for u in prompts]
    return residual_stream(model, tok, texts, backend=ctx.a.backend, batch_size=ctx.a.batch_size).float()


def _record(ctx: AnalysisRun, v: Variant, prompts: list[str]) -> torch.Tensor:
    model, tok = v.load(ctx.device, ctx.dtype)
    return _acts(ctx, model, tok, v.system, prompts)


def trajectories(ctx: AnalysisRun) -> dict[str, Any] | None:
    """Per student entry with checkpoints: the measures at every step. None when no student
    saved checkpoints (the caller says why)."""
    dirs = _student_dirs(ctx)
    if not dirs:
        return None
    a, trait = ctx.a, ctx.trait()
    prompts = list(GENERAL_PROMPTS[: max(2, a.n_prompts)])
    params = {"students": {n: str(d.name) for n, d in dirs.items()}, "prompts": len(prompts), "eval": ctx.config.eval.key(),
              "backend": a.backend, "seed": ctx.cfg["seed"], "trait": trait.target, "gamma_steps": True,
              "gradient": [a.gradient_batches, a.gradient_batch_size, a.n_boot]}  # fmt: skip

    def make() -> dict[str, Any]:
        out: dict[str, Any] = {"prompts": f"{len(prompts)} general prompts, last token", "students": {}}
        for name, d in dirs.items():
            spec = ctx.spec_of(name)
            base_acts = _record(ctx, Variant(spec), prompts)
            v_t = mean_difference(_record(ctx, Variant(spec, system=trait.system_prompt), prompts), base_acts)
            t_path = ctx.teacher_delta(spec)
            teacher = Delta.load(t_path) if t_path is not None else None
            dense = teacher.to_dense() if teacher is not None else None
            seed = int(d.name.rsplit("seed", 1)[-1].split("-")[0])
            rows = []
            for step, path in [(0, None), *checkpoints(d)]:
                model, tok = Variant(spec, delta_path=path).load(ctx.device, ctx.dtype)
                score = logprob_score(model, tok, trait, ctx.config.eval, seed=ctx.cfg["seed"])
                acts = _acts(ctx, model, tok, None, prompts)
                row = {"step": step, "trait_score": {k: score[k] for k in ("mean", "lo", "hi", "n")},
                       "vector_cos": vector_cosines(acts, base_acts, v_t) if path is not None else None}  # fmt: skip
                if teacher is not None and path is not None:
                    row["update_cos"] = delta_cosines(Delta.load(path), teacher)["overall"]
                del model
                if dense is not None:
                    row["gradient_cos"] = _gradient_cos(ctx, name, seed, path, dense)
                rows.append(row)
                log.info("trajectory %s step %d: p(target) %.4f", name, step, score["mean"])
            out["students"][name] = {"model": spec, "data": ctx.students[name]["data"], "seed": str(seed),
                                     "steps": rows, "update_cos": "teacher delta" if teacher is not None else None,
                                     "gamma_steps": gamma_steps(ctx, name, spec),
                                     "update_steps": update_steps(ctx, name) if spec == ctx.teacher_spec else None}  # fmt: skip
        return out

    return ctx.run.compute_json("analysis/trajectories", params, make, filename="trajectories.json")



def trajectories_figure(students: dict[str, Any], path: Path) -> Path:
    """Over optimiser steps, per student: p(target) with its CI, cos(v_S, v_T), gamma over the
    run's targets with its CI (where every target saved checkpoints) and, where the run has a
    teacher delta, the update cosine (own teacher solid; the other targets' teachers dashed, where
    every target has one) and the imitation-gradient alignment with its CI over batches."""
    has_update = any(r.get("update_cos") is not None for d in students.values() for r in d["steps"])
    has_gamma = any(d.get("gamma_steps") for d in students.values())
    has_grad = any(r.get("gradient_cos") for d in students.values() for r in d["steps"])
    upd, grad = "cos(student update,\nteacher update)", "cos(-grad of imitation loss,\nteacher update)"
    labels = ["p(target)", "cos(v_S, v_T), mean over layers"]
    labels += ["gamma over targets (nats)"] if has_gamma else []
    labels += [upd] if has_update else []
    labels += [grad] if has_grad else []
    ncol = min(3, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.3, 3.2 * nrow), squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    axes = axes[: len(labels)]
    ax_of = dict(zip(labels, axes))
    for i, (n, d) in enumerate(students.items()):
        steps = [r["step"] for r in d["steps"]]
        ts = [r["trait_score"] for r in d["steps"]]
        ax_of["p(target)"].errorbar(steps, [num(t["mean"]) for t in ts], yerr=np.array([err(t)[1:] for t in ts]).T,
                                    marker="o", ms=3, capsize=2, color=f"C{i}", label=n)  # fmt: skip
        vc = [(r["step"], num(r["vector_cos"]["mean"])) for r in d["steps"] if r.get("vector_cos")]
        if vc:
            ax_of[labels[1]].plot(*zip(*vc), marker="o", ms=3, color=f"C{i}", label=n)
        if has_gamma and d.get("gamma_steps"):
            g = d["gamma_steps"]
            lo = [r["gamma"] - r["gamma_ci"]["lo"] if r["gamma_ci"] else 0.0 for r in g]
            hi = [r["gamma_ci"]["hi"] - r["gamma"] if r["gamma_ci"] else 0.0 for r in g]
            ax_of["gamma over targets (nats)"].errorbar([r["step"] for r in g], [r["gamma"] for r in g], yerr=[lo, hi],
                                                        marker="o", ms=3, capsize=2, color=f"C{i}", label=n)  # fmt: skip
        uc = [(r["step"], num(r["update_cos"])) for r in d["steps"] if r.get("update_cos") is not None]
        if has_update and uc:
            ax_of[upd].plot(*zip(*uc), marker="o", ms=3, color=f"C{i}", label=n)
        if has_update and d.get("update_steps"):
            us = d["update_steps"]
            ax_of[upd].plot([r["step"] for r in us], [r["others"] for r in us], ls="--", marker="x", ms=3,
                            color=f"C{i}", label=f"{n}: other targets' teachers")  # fmt: skip
        gc = [(r["step"], r["gradient_cos"]["cos_ci"]) for r in d["steps"] if r.get("gradient_cos")]
        if has_grad and gc:
            ax_of[grad].errorbar([s for s, _ in gc], [num(c["mean"]) for _, c in gc],
                                 yerr=np.array([err(c)[1:] for _, c in gc]).T, marker="o", ms=3, capsize=2,
                                 color=f"C{i}", label=n)  # fmt: skip
    for ax, lab in zip(axes, labels):
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(lab, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.axhline(0, color="black", lw=0.8)
    axes[0].legend(fontsize=7)
    if has_update:  # cosines of ~1e-3: an offset exponent keeps the tick labels short
        ax_of[upd].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
        if any(d.get("update_steps") for d in students.values()):
            ax_of[upd].legend(fontsize=6)
    return save(fig, path)


def _trajectories_caption(section: dict[str, Any]) -> str:
    return ("Students read back at each saved checkpoint (step 0 = the base; the first seed of "
     "the primary target). Panel 1: p(target) with its bootstrap CI over questions. Panel 2: cosine "
     "of the student's learned vector v_S (mean resid_post shift vs the base, last token of "
     f"{section.get('prompts', 'general prompts')}) with the teacher's trait vector v_T (prompted minus plain "
     "base on the same prompts), mean over layers. Then, where every target's student saved "
     "checkpoints: gamma over the targets at each step (own-target minus other-target shift, nats), "
     "with its t-interval over targets; and, for runs with a teacher delta, the cosine of the "
     "student's update with its teacher's (dashed, where every target has a finetuned teacher: the "
     "mean cosine of each target's student with the other targets' teachers, the baseline a shared "
     "finetuning direction gives) and the imitation-gradient alignment: the cosine of the descent "
     "direction of the student's own training loss at that checkpoint with the teacher's update, with "
     "a bootstrap CI over batches. A control student (data = 'control') is measured against the "
     "primary target's teacher and trait vector: what finetuning without the trait gives on each measure.")  # fmt: skip


render_trajectories = figure_render(
    "trajectories", "Trajectories", "students", lambda s, p: trajectories_figure(s["students"], p), _trajectories_caption
)


ANALYSIS = Analysis(
    name="trajectories", render=render_trajectories, title="Trajectories", compute=trajectories,
    needs="checkpointed students (checkpoint_every)",
    skip=lambda ctx: None if ctx.a.trajectories else off("trajectories"),
    extras=lambda ctx: tuple(backend_module(ctx.a.backend)),
    absent="no student saved checkpoints (set checkpoint_every on a [[students]] entry)",
)  # fmt: skip
