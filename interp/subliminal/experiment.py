"""The subliminal-learning experiment: teachers -> numbers -> filter -> students -> scores -> matrix.

One run holds one teacher per target (`trait.targets`; a single `trait.target` is the
one-row case), the control teacher's data, and every `[[students]]` entry trained on each
target's data (or once on the control data) for every seed. Every model is scored on every
candidate, so the summary carries the trait x student matrix and its effect gamma
(`interp.subliminal.matrix`). Stages are cached under keys of everything they read
(`interp.subliminal.stages`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interp.config import to_dict
from interp.lm.models import Variant, trusting_remote_code
from interp.registry import register_experiment
from interp.stats import t_interval
from interp.store.stages import RunDir, Stage, read_json
from interp.subliminal import matrix as mx
from interp.subliminal.config import NEUTRAL_PROMPT, SubliminalConfig
from interp.subliminal.jobs import eval_job, run_evals, run_finetunes
from interp.subliminal.stages import (
    eval_stage,
    filter_stage,
    finetuned_teacher,
    generate_stages,
    random_direction_stage,
    steered,
    steering_direction_stage,
    student_job,
)

log = logging.getLogger("interp")

# A teacher whose own shift toward its target is below this many nats barely carries the
# trait: its students cannot be expected to show one.
WEAK_TEACHER_NATS = 0.5


@dataclass
class Plan:
    """What one run builds: stages by role, filled in order by `run`."""

    teachers: dict[str, Variant] = field(default_factory=dict)  # target -> teacher
    teacher_deltas: dict[str, Stage] = field(default_factory=dict)  # "<spec>" (primary) or "<spec>:<t>"
    data: dict[str, Stage] = field(default_factory=dict)  # "trait:<t>" | "control"
    evals: dict[str, Stage] = field(default_factory=dict)  # label -> eval stage
    directions: dict[str, Stage] = field(default_factory=dict)  # target -> steering direction
    students: dict[str, dict[str, dict[int, Stage]]] = field(default_factory=dict)  # name -> target -> seed
    phases_s: dict[str, float] = field(default_factory=dict)  # wall seconds per phase in this process


def label(kind: str, target: str, primary: str, seed: int | None = None) -> str:
    """Model labels: the primary target's keep the one-target names ("teacher", "same-init/seed0")."""
    base = kind if target in (primary, "control") else f"{kind}:{target}"
    return base if seed is None else f"{base}/seed{seed}"


def _teachers(cfg: SubliminalConfig, run: RunDir, plan: Plan) -> None:
    spec, targets = cfg.teacher.model, cfg.trait.target_list()
    cross = sorted({cfg.student_model(s) for s in cfg.students} - {spec})
    for t in targets:
        prompted = Variant(spec, system=cfg.trait.trait(t).system_prompt)
        if cfg.teacher.mode == "prompt":
            plan.teachers[t] = prompted
            continue
        if cfg.teacher.mode == "steered":
            plan.directions[t] = steering_direction_stage(cfg, run, prompted, cfg.trait.trait(t))
            plan.teachers[t] = steered(spec, plan.directions[t], cfg.teacher.steer_scale)
            continue
        # The primary target's teacher also gets a finetuned twin on each cross-model base,
        # the own-base reference that update alignment compares cross-model students against.
        bases = [spec, *cross] if t == targets[0] else [spec]
        deltas = finetuned_teacher(cfg, run, prompted, cfg.trait.trait(t), bases)
        for b, st in deltas.items():
            plan.teacher_deltas[b if t == targets[0] else f"{b}:{t}"] = st
        plan.teachers[t] = Variant(spec, delta_path=deltas[spec].path / "delta.safetensors")


def _control_teacher(cfg: SubliminalConfig, run: RunDir, plan: Plan) -> Variant:
    if cfg.teacher.control == "random":  # steered by a random direction of the primary's norm
        primary = plan.directions[cfg.trait.target_list()[0]]
        return steered(cfg.teacher.model, random_direction_stage(cfg, run, primary), cfg.teacher.steer_scale)
    return Variant(cfg.teacher.model, system=NEUTRAL_PROMPT if cfg.teacher.control == "neutral" else None)


def _evals(cfg: SubliminalConfig, run: RunDir, plan: Plan) -> None:
    spec, targets = cfg.teacher.model, cfg.trait.target_list()
    primary = targets[0]
    trait0 = cfg.trait.trait(primary)
    plan.evals["base"] = eval_stage(cfg, run, "base", Variant(spec), trait0)
    for t in targets:
        lab = label("teacher", t, primary)
        plan.evals[lab] = eval_stage(cfg, run, lab, plan.teachers[t], cfg.trait.trait(t))
    if cfg.teacher.mode in ("finetuned", "steered"):  # the stimulus its answers / direction came from
        prompted = Variant(spec, system=trait0.system_prompt)
        plan.evals["prompted-teacher"] = eval_stage(cfg, run, "prompted-teacher", prompted, trait0)
    if any(s.data == "control" for s in cfg.students) and cfg.teacher.control != "none":
        plan.evals["control-teacher"] = eval_stage(cfg, run, "control-teacher", _control_teacher(cfg, run, plan), trait0)
    for cs in sorted({cfg.student_model(s) for s in cfg.students} - {spec}):
        plan.evals[f"base:{cs}"] = eval_stage(cfg, run, f"base-{cs}", Variant(cs), trait0)
        if cs in plan.teacher_deltas:
            own = Variant(cs, delta_path=plan.teacher_deltas[cs].path / "delta.safetensors")
            plan.evals[f"teacher:{cs}"] = eval_stage(cfg, run, f"teacher-{cs}", own, trait0)


def _students(cfg: SubliminalConfig, run: RunDir, plan: Plan) -> None:
    """Every student's finetune, then every student's evaluation: planned first, so that the
    missing ones run together (stacked where they share a base and settings: `jobs`)."""
    targets = cfg.trait.target_list()
    control = _control_teacher(cfg, run, plan)
    jobs, labels = [], []
    for s in cfg.students:
        for t in targets if s.data == "trait" else ["control"]:
            data = plan.data["control" if t == "control" else f"trait:{t}"]
            source = control if t == "control" else plan.teachers[t]
            for seed in cfg.seeds_of(s):
                jobs.append(student_job(cfg, run, s, t, seed, data, source, control))
                labels.append((s, t, seed))
    t0 = time.time()
    run_finetunes(jobs)
    plan.phases_s["student training"] = round(time.time() - t0, 2)
    evals = []
    for job, (s, t, seed) in zip(jobs, labels):
        plan.students.setdefault(s.name, {}).setdefault(t, {})[seed] = job.stage
        variant = Variant(cfg.student_model(s), delta_path=job.stage.path / "delta.safetensors")
        trait = cfg.trait.trait(targets[0] if t == "control" else t)
        lab = label(s.name, t, targets[0], seed)
        evals.append(eval_job(run, lab, variant, trait, cfg.eval, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype,
                              student_seed=seed))
    t0 = time.time()
    run_evals(evals)
    plan.phases_s["student evals"] = round(time.time() - t0, 2)
    for e in evals:
        plan.evals[e.label] = e.stage


def _data(cfg: SubliminalConfig, run_dir: RunDir, plan: Plan) -> None:
    """Teachers and their filtered data: what every run with these teachers and data shares."""
    _teachers(cfg, run_dir, plan)
    teachers = {f"trait/{t}": plan.teachers[t] for t in cfg.trait.target_list()}
    if any(s.data == "control" or s.mix_control is not None for s in cfg.students):  # control data or mixed in
        teachers["control"] = _control_teacher(cfg, run_dir, plan)
    for which, gen in generate_stages(cfg, run_dir, teachers).items():  # every teacher's data in one pass
        plan.data[which.replace("/", ":")] = filter_stage(cfg, run_dir, which, gen)


def prepare(cfg: SubliminalConfig, run_dir: RunDir) -> None:
    """The teachers and data stages alone (a sweep runs them once per data identity)."""
    with trusting_remote_code(cfg.trusted_specs()):
        _data(cfg, run_dir, Plan())


def data_identity(cfg: SubliminalConfig) -> dict[str, Any]:
    """Everything `prepare` reads: runs equal on it share one data task in a sweep. (The store
    decides sharing by stage key anyway; this only schedules the shared stages once, first.)"""
    return {"seed": cfg.seed, "device": cfg.device, "dtype": cfg.dtype, "trait": to_dict(cfg.trait),
            "teacher": to_dict(cfg.teacher), "data": to_dict(cfg.data),
            "student_models": sorted({cfg.student_model(s) for s in cfg.students}),
            "control": any(s.data == "control" or s.mix_control is not None for s in cfg.students)}  # fmt: skip


@register_experiment("subliminal", SubliminalConfig, prepare=prepare, data_identity=data_identity)
def run(cfg: SubliminalConfig, run_dir: RunDir) -> dict[str, Any]:
    with trusting_remote_code(cfg.trusted_specs()):  # none unless [model] trust_remote_code
        return _run(cfg, run_dir)


def _run(cfg: SubliminalConfig, run_dir: RunDir) -> dict[str, Any]:
    plan = Plan()
    for name, phase in (("teachers and data", _data), ("teacher evals", _evals)):
        t0 = time.time()
        phase(cfg, run_dir, plan)
        plan.phases_s[name] = round(time.time() - t0, 2)
    _students(cfg, run_dir, plan)
    summary = summarize(cfg, plan)
    # wall seconds per phase in this process (cached stages cost ~0: a rerun's are not a fresh run's)
    summary["provenance"] = {"phases_s": plan.phases_s}
    rel = lambda st: str(st.path.relative_to(run_dir.root))  # noqa: E731
    primary = cfg.trait.target_list()[0]
    summary["artifacts"] = {
        "teacher_mode": cfg.teacher.mode,
        "teacher_deltas": {k: rel(v) for k, v in plan.teacher_deltas.items() if ":" not in k},
        "data": {data_key(k, primary): rel(v) for k, v in plan.data.items()},
        "students": {n: {str(sd): rel(st) for sd, st in by_t[next(iter(by_t))].items()}
                     for n, by_t in plan.students.items()},  # fmt: skip
        "students_by_target": {n: {t: {str(sd): rel(st) for sd, st in seeds.items()} for t, seeds in by_t.items()}
                               for n, by_t in plan.students.items()},  # fmt: skip
        "evals": {k: rel(v) for k, v in plan.evals.items()},
        "teacher_directions": {t: rel(v) for t, v in plan.directions.items()},
        # each target's teacher and the control teacher as models (`Variant.from_record`)
        "teachers": {t: v.to_record(run_dir.root) for t, v in plan.teachers.items()},
        "control_teacher": _control_teacher(cfg, run_dir, plan).to_record(run_dir.root)
        if "control" in plan.data else None,
    }
    return summary


def data_key(key: str, primary: str) -> str:
    """The artifacts' name of a dataset: "trait" for the primary target's data (the one-target name), "trait:<t>" for the others."""
    return "trait" if key == f"trait:{primary}" else key


# ---------------------------------------------------------------- summary


def _metric(res: dict, name: str) -> dict[str, float]:
    m = res[name]
    return {"mean": m["mean"], "lo": m["lo"], "hi": m["hi"], "n": m["n"]}


def summarize(cfg: SubliminalConfig, plan: Plan) -> dict[str, Any]:
    results = {lab: read_json(st.path / "eval.json") for lab, st in plan.evals.items()}
    models, table = {}, []
    for lab, res in results.items():
        models[lab] = {
            "model": res["model"], "system_prompt": res["system_prompt"], "chat_format": res["chat_format"],
            "trait_rate": _metric(res, "trait_rate"), "logprob": _metric(res, "logprob"),
            "log_odds": res["logprob"]["log_odds"],
            "top_answers": dict(list(res["trait_rate"]["top_first_words"].items())[:5]),
        }  # fmt: skip
        table.append(_row(lab, res["model"], models[lab]))
    primary = cfg.trait.target_list()[0]
    by_student = {}
    for name, by_t in plan.students.items():
        t0 = primary if primary in by_t else next(iter(by_t))
        seeds = by_t[t0]
        agg = {}
        for metric in ("trait_rate", "logprob"):
            vals = [models[label(name, t0, primary, s)][metric]["mean"] for s in seeds]
            agg[metric] = t_interval(vals, cfg.eval.ci).to_dict() | {"per_seed": vals}
        spec = next(s for s in cfg.students if s.name == name)
        settings = spec.settings(cfg.train)
        by_student[name] = {"model": cfg.student_model(spec), "data": spec.data, "objective": settings.objective,
                            "distill_vocab": settings.distill_vocab, "method": settings.method, **agg}  # fmt: skip
        if len(seeds) > 1:
            table.append(_row(f"{name} (mean of {len(seeds)} seeds)", cfg.student_model(spec), agg))
    filt = {data_key(k, primary): read_json(st.path / "filter.json") for k, st in plan.data.items()}
    trait = cfg.trait.trait(primary)
    return {
        "experiment": "subliminal",
        "name": cfg.name,
        "trait": {"category": trait.category, "target": trait.target, "targets": cfg.trait.target_list(),
                  "system_prompt": trait.system_prompt, "candidates": list(trait.candidates)},  # fmt: skip
        "models": models,
        "students": by_student,
        "filter": filt,
        "matrix": matrix_section(cfg, plan, models),
        "table": table,
    }


def _row(lab: str, model: str, m: dict) -> dict[str, Any]:
    tr, lp = m["trait_rate"], m["logprob"]
    return {
        "model": lab, "base": model,
        "trait_rate": tr["mean"], "rate_ci": f"[{tr['lo']:.3f}, {tr['hi']:.3f}]",
        "logprob_p": lp["mean"], "logprob_ci": f"[{lp['lo']:.4f}, {lp['hi']:.4f}]",
    }  # fmt: skip


# ---------------------------------------------------------------- the matrix


def matrix_section(cfg: SubliminalConfig, plan: Plan, models: dict[str, Any]) -> dict[str, Any]:
    """Per student entry: shifts (nats of log-odds vs its base), gamma with tests, DiD vs control."""
    targets = cfg.trait.target_list()
    primary = targets[0]
    cands = cfg.trait.candidate_list()
    cols = [cands.index(t) for t in targets]
    base_lo = {cfg.teacher.model: np.array(models["base"]["log_odds"])}
    for lab, m in models.items():
        if lab.startswith("base:"):
            base_lo[lab.split(":", 1)[1]] = np.array(m["log_odds"])
    t_base = base_lo[cfg.teacher.model]
    teacher_shift = np.stack([np.array(models[label("teacher", t, primary)]["log_odds"]) - t_base for t in targets])
    own = {t: float(teacher_shift[i, cols[i]]) for i, t in enumerate(targets)}
    notes = [f"teacher of '{t}' shifts its own target by only {v:.2f} nats (< {WEAK_TEACHER_NATS})"
             for t, v in own.items() if v < WEAK_TEACHER_NATS]  # fmt: skip
    for n in notes:
        log.warning("%s", n)
    controls = _control_shifts(cfg, plan, models, base_lo)
    arms = {}
    for s in cfg.students:
        if s.data != "trait":
            continue
        spec = cfg.student_model(s)
        seeds = cfg.seeds_of(s)
        per_seed = np.stack([
            np.stack([np.array(models[label(s.name, t, primary, sd)]["log_odds"]) - base_lo[spec] for t in targets])
            for sd in seeds
        ])  # fmt: skip  [seed, target, candidate]
        arms[s.name] = _arm(cfg, s, spec, per_seed, teacher_shift, cols, controls.get(spec))
    return {"targets": targets, "candidates": cands, "teacher_own_shift": own,
            "teacher_shift": teacher_shift.round(5).tolist(), "arms": arms, "notes": notes}  # fmt: skip


def _control_shifts(cfg, plan, models, base_lo) -> dict[str, np.ndarray]:
    """Mean shift of each base's control students (over entries and seeds)."""
    primary = cfg.trait.target_list()[0]
    out: dict[str, list[np.ndarray]] = {}
    for s in cfg.students:
        if s.data == "control":
            spec = cfg.student_model(s)
            for sd in cfg.seeds_of(s):
                lo = np.array(models[label(s.name, "control", primary, sd)]["log_odds"])
                out.setdefault(spec, []).append(lo - base_lo[spec])
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def _arm(cfg, s, spec, per_seed, teacher_shift, cols, control) -> dict[str, Any]:
    settings = s.settings(cfg.train)
    mean = per_seed.mean(axis=0)
    info: dict[str, Any] = {"model": spec, "objective": settings.objective, "method": settings.method,
                            "distill_vocab": settings.distill_vocab if settings.objective == "distill" else None,
                            "shifts": mean.round(5).tolist()}  # fmt: skip
    if len(cols) < 2:
        info["gamma"] = None
        info["why_no_gamma"] = "gamma needs >= 2 targets (trait.targets)"
    else:
        test = mx.permutation_test(mean, teacher_shift, cols, seed=cfg.seed)
        per = [mx.gamma(p, cols) for p in per_seed]
        # the targets as units (the permutation test's units): an interval also for one seed
        per_target = mx.per_target_gamma(mean, cols)
        info |= test.to_dict() | {"gamma_per_seed": per, "gamma_ci": t_interval(per, cfg.eval.ci).to_dict(),
                                  "gamma_per_target": per_target.round(6).tolist(),
                                  "gamma_targets_ci": t_interval(per_target, cfg.eval.ci).to_dict()}  # fmt: skip
    own = np.array([mean[i, c] for i, c in enumerate(cols)])
    info["own_shift"] = own.round(5).tolist()
    if control is not None:  # own-target shift beyond what the control students moved there
        info["did_vs_control"] = t_interval(own - control[cols], cfg.eval.ci).to_dict()
    return info
