"""The mechanism analyses of a trait-matrix run (several targets, one prompted teacher each).

Called by `interp analyze` (`interp.analysis.run`) when the run has >= 2 targets. Every base,
prompted teacher (one per target), control teacher and student (every target and seed) is
recorded at the *answer positions* of the same held-out number rows: number prompts with
uniformly random answers that no model wrote and no student trained on. These are the
positions where a soft-label student was taught to match its teacher, and the system prompt
is not what is being read (the student has none). On those recordings
(`interp.mech.shift_matrix`):

- direction gamma: cos(student shift, target-specific teacher direction), own minus other
  targets, per layer, with an exact permutation test over target labels and a CI over seeds;
- same-init vs control: cos(student shift, prompted_j - control-prompted), the trait without
  "a system prompt is present", for each trait student against its own target and for the
  control student against every target, difference with a CI over seeds;
- the target probe: trained on teachers, applied to students, gamma of its probabilities.

The pre-declared summary statistic of each is its mean over layers; per-layer values are
reported beside it, never used to pick a layer.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.extras import backend_module
from interp.fmt import fmt, fmt_est
from interp.lm.models import Variant, format_prompt
from interp.lm.record import answer_activations, load_activations, save_activations
from interp.mech import shift_matrix as sm
from interp.stats import t_interval
from interp.store.stages import stable_hash
from interp.subliminal.config import NEUTRAL_PROMPT
from interp.subliminal.number_data import number_prompts, random_answers


def answer_rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Held-out number prompts (seed + 2: not the data's seed, not the 'numbers' set's) and random answers."""
    return number_prompts(n, seed=seed + 2), random_answers(n, seed=seed + 2)


def record_answers(ctx: AnalysisRun, label: str, variant: Variant, rows: tuple[list[str], list[str]]) -> torch.Tensor:
    """[row, layer, d_model]: resid_post averaged over each row's answer tokens (a cached stage)."""
    prompts, answers = rows
    backend = "hf" if variant.steer else ctx.a.backend  # a steering hook lives on the HF modules
    params = {"model": variant.identity(), "backend": backend, "positions": "answer-mean",
              "rows": stable_hash([prompts, answers])}  # fmt: skip

    def write(folder: Path) -> None:
        model, tok = variant.load(ctx.device, ctx.dtype)
        texts = [format_prompt(tok, p, variant.system) for p in prompts]
        acts = answer_activations(model, tok, texts, answers, backend=backend, batch_size=ctx.a.batch_size)
        meta = {"model": label, "backend": backend, "positions": "answer-mean", "prompt_set": "answers",
                "layer_axis": 1, "system_prompt": variant.system}  # fmt: skip
        save_activations(folder, "answers", acts, meta)
        del model
        gc.collect()

    st = ctx.run.compute(f"record/answers/{label}", params, write)
    return load_activations(st.path, "answers")[0]


def _student_acts(ctx: AnalysisRun, name: str, spec: str, targets: list[str], rows) -> torch.Tensor:
    """[seed, target, row, layer, d_model] for one student entry (targets: ["control"] for control data)."""
    by_t = ctx.art["students_by_target"][name]
    seeds = sorted(by_t[targets[0]], key=int)
    return torch.stack([
        torch.stack([record_answers(ctx, f"{name}-{t}-seed{sd}", Variant(spec, delta_path=ctx.path(by_t[t][sd]) / "delta.safetensors"), rows)
                     for t in targets])
        for sd in seeds
    ])  # fmt: skip


def _over_seeds(per_seed_layer: np.ndarray) -> dict:
    """A [seed, layer] array as reported: the per-layer seed mean, each seed's layer mean and the
    95% t-interval over seeds of that layer mean (the pre-declared statistic)."""
    layer_mean = np.nanmean(per_seed_layer, axis=1)
    return {"by_layer": sm.summarise_layers(per_seed_layer.mean(0)), "layer_mean_per_seed": layer_mean.round(6).tolist(),
            "ci": t_interval(layer_mean.tolist(), 0.95).to_dict()}  # fmt: skip


def _arm(ctx, name, spec, rows, refs) -> dict[str, Any]:
    """Direction gamma, target probe and own-direction cosines for one trait student entry."""
    targets, base, prompted, vs_control = refs["targets"], refs["base"], refs["prompted"], refs["vs_control"]
    s = _student_acts(ctx, name, spec, targets, rows)  # [seed, target, row, layer, d]
    shifts = (s.double() - base.double()).mean(2)  # [seed, target, layer, d]
    u = sm.centred(sm.directions(prompted, base))
    cos = np.stack([sm.cosine_matrix(w, u) for w in shifts])  # [seed, layer, k, k]
    probe = sm.target_probe(prompted - base, s - base, seed=ctx.cfg["seed"])
    out = {
        "model": spec, "n_seeds": int(s.shape[0]), "n_rows": int(s.shape[2]),
        "direction": sm.gamma_test(cos, seed=ctx.cfg["seed"]),
        "probe": {"teacher_accuracy": sm.summarise_layers(probe["teacher_accuracy"]), "chance": probe["chance"],
                  "n_test_rows": probe["n_test_rows"], **sm.gamma_test(probe["probs"], seed=ctx.cfg["seed"])},
        "teachers": refs["teachers"],
        "shift_norm_by_layer": sm.summarise_layers(shifts.norm(dim=-1).mean((0, 1)).numpy()),
    }  # fmt: skip
    if vs_control is not None:
        out["own_cos_vs_control_direction"] = _over_seeds(np.stack([sm.own_cosine(w, vs_control) for w in shifts]))
    return out


def _control_cos(ctx, name, spec, rows, refs) -> np.ndarray:
    """[seed, layer]: a control student's cos with each target's prompted - control direction, mean over targets."""
    s = _student_acts(ctx, name, spec, ["control"], rows)[:, 0]  # [seed, row, layer, d]
    shifts = (s.double() - refs["base"].double()).mean(1)  # [seed, layer, d]
    return np.stack([np.nanmean(sm.cosine_matrix(w[None], refs["vs_control"]), axis=(1, 2)) for w in shifts])


def _teachers(ctx: AnalysisRun, spec: str) -> tuple[list[Variant], Variant | None, str]:
    """Each target's teacher on `spec` and the control teacher (None without one), and what they are.

    On the teacher's own base these are the run's teachers (prompted, finetuned or steered);
    on a cross-model student's base, the base prompted with each target's system prompt: the
    trait as that architecture expresses it.
    """
    targets, art = ctx.summary["trait"]["targets"], ctx.art
    if spec == ctx.teacher_spec and "teachers" in art:
        control = art.get("control_teacher")
        return ([Variant.from_record(art["teachers"][t], ctx.root) for t in targets],
                Variant.from_record(control, ctx.root) if control else None, "the run's teachers")  # fmt: skip
    prompted = [Variant(spec, system=ctx.trait_for(t).system_prompt) for t in targets]
    neutral = Variant(spec, system=NEUTRAL_PROMPT) if ctx.config.teacher.control == "neutral" else None
    return prompted, neutral, "the base prompted with each target's system prompt"


def _refs(ctx, spec: str, rows) -> dict[str, Any]:
    """Recordings of the base, each target's teacher and the control teacher on `spec`."""
    targets = ctx.summary["trait"]["targets"]
    teachers, control, what = _teachers(ctx, spec)
    base = record_answers(ctx, f"base-{spec}", Variant(spec), rows)
    prompted = torch.stack([record_answers(ctx, f"teacher-{spec}-{t}", v, rows) for t, v in zip(targets, teachers)])
    vs_control = None
    if control is not None:
        vs_control = sm.directions(prompted, record_answers(ctx, f"control-teacher-{spec}", control, rows))
    return {"targets": targets, "base": base, "prompted": prompted, "vs_control": vs_control, "teachers": what}


def matrix_mechanisms(ctx: AnalysisRun) -> dict[str, Any]:
    """Per student entry (arm): direction gamma, probe gamma, and (control runs) same-init vs control."""
    rows = answer_rows(ctx.a.n_answer_rows, ctx.cfg["seed"])
    arms: dict[str, Any] = {}
    wanted = set(ctx.a.arms) if ctx.a.arms else set(ctx.students)  # [analysis] arms: the trait arms read
    for spec in sorted({ctx.spec_of(n) for n in wanted}):
        refs = _refs(ctx, spec, rows)
        # the chosen trait arms of this base, and its control students (their comparison)
        names = [n for n in ctx.students if ctx.spec_of(n) == spec and (n in wanted or ctx.students[n]["data"] == "control")]
        control = {n: _control_cos(ctx, n, spec, rows, refs) for n in names
                   if ctx.students[n]["data"] == "control" and refs["vs_control"] is not None}  # fmt: skip
        for n in names:
            if ctx.students[n]["data"] == "control":
                if n in control:
                    arms[n] = {"model": spec, "control": True, "cos_vs_control_direction": _over_seeds(control[n])}
                continue
            arms[n] = _arm(ctx, n, spec, rows, refs)
            if control:  # the same quantity for this base's control students, paired by seed position
                c = np.concatenate(list(control.values()))
                own = np.asarray(arms[n]["own_cos_vs_control_direction"]["layer_mean_per_seed"])
                ctrl = np.nanmean(c, axis=1)[: len(own)]
                diff = own[: len(ctrl)] - ctrl
                arms[n]["same_init_minus_control"] = t_interval(diff.tolist(), 0.95).to_dict() | {"per_seed": diff.round(6).tolist()}
        gc.collect()
    return {
        "positions": "mean over answer tokens of held-out number rows (random answers)",
        "n_rows": len(rows[0]), "backend": ctx.a.backend, "targets": ctx.summary["trait"]["targets"],
        "summary_statistic": "mean over layers (pre-declared)", "arms": arms,
    }  # fmt: skip



def render_matrix_mechanisms(doc: ReportDoc, run: str, mm: dict[str, Any]) -> None:
    """Trait-matrix runs: does each student's activation shift point toward its own teacher?"""
    doc.heading("Trait-matrix mechanisms at answer positions", 3)
    rows = [["student", "base model", "direction gamma [CI over seeds]", "p (perm.)",
             "probe gamma [CI]", "p (perm.)", "own - control cos [CI]"]]  # fmt: skip
    for name, a in (mm.get("arms") or {}).items():
        if a.get("control"):
            rows.append([name + " (control)", a.get("model"), "", "", "", "",
                         "cos " + fmt_est((a.get("cos_vs_control_direction") or {}).get("ci"))])  # fmt: skip
            continue
        d, pr = a.get("direction") or {}, a.get("probe") or {}
        rows.append([name, a.get("model"), fmt_est(d.get("gamma_ci")), fmt(d.get("p")),
                     fmt_est(pr.get("gamma_ci")), fmt(pr.get("p")), fmt_est(a.get("same_init_minus_control"))])  # fmt: skip
    doc.table(rows, [1.5, 1.5, 2.1, 1.1, 1.9, 1.1, 1.8])  # p columns fit "0.008333" on one line
    doc.para(f"Activations (resid_post, backend {mm.get('backend')}) averaged over the answer tokens "
             f"of {mm.get('n_rows')} held-out number rows with random answers that no model wrote: "
             "the positions soft-label students were taught at, without any system prompt in the "
             "student's input. Direction gamma: cosine of the student's activation shift (vs its base) "
             "with its own teacher's target-specific direction (teacher minus base, centred over "
             "targets) minus the cosine with the other targets' directions. Probe gamma: a "
             "probe trained to tell the teachers apart, applied to the students; probability of "
             "the own target minus the others. Both are means over layers (fixed in advance, no "
             "layer picked); p: permutation over target labels. own - control: cosine of a trait "
             "student's shift with (its teacher - the control teacher) minus the control "
             "student's, per seed. Cross-model students are compared with their own base "
             "prompted with each target's system prompt.")  # fmt: skip


def _skip(ctx: AnalysisRun) -> str | None:
    if len(ctx.config.trait.target_list()) < 2:
        return "the trait matrix needs >= 2 targets (trait.targets)"
    if ctx.art.get("teacher_mode") != "prompt" and "teachers" not in ctx.art:
        return "summary.json does not list each target's teacher; rerun `interp run`"
    return None


def opt_in_skip(ctx: AnalysisRun, flag: str) -> str | None:
    """Why an opt-in analysis of a finished trait-matrix run (`[analysis] <flag> = true`) does not run."""
    if not getattr(ctx.a, flag):
        return off(flag)
    why = _skip(ctx)
    if why:
        return why
    if not (ctx.summary.get("matrix") or {}).get("candidates"):
        return "summary.json has no trait matrix; rerun `interp run`"
    return None


ANALYSIS = Analysis(
    name="matrix_mechanisms", render=render_matrix_mechanisms, report_when_absent=False, title="Trait-matrix mechanisms", compute=matrix_mechanisms,
    needs="every target's teacher and the students' answer activations", skip=_skip,
    extras=lambda ctx: (*backend_module(ctx.a.backend), "sklearn"),
)  # fmt: skip
