"""Detection (`[analysis] detection = true`): can the trait be found in the data? The three
detectors of `interp.mech.detection` (a classifier, the base as judge, the hidden-signal scan)
per target, each a held-out AUROC with a CI, and the imitation-gradient scan where the teacher
has a delta. Also what the data-side analyses (divergence, incontext, data_controls) share:
each target's teacher and data stage as the run recorded them, and why a run cannot support them.

Each target's trait data is compared with the run's control data (its control teacher's). The
divergence and scan stages are the ones the experiment's masked and scan-filtered students use
(`interp.subliminal.stages`), so a run that trained them reuses them here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.fmt import fmt
from interp.lm.delta import Delta
from interp.lm.models import Variant, completion_suffix, describe, format_prompt, load_model
from interp.lm.score import continuation_logprobs, row_examples
from interp.mech import detection as dt
from interp.mech.gradient import iter_imitation_gradients
from interp.stats import cosine
from interp.store.stages import read_jsonl, stable_hash
from interp.subliminal.experiment import data_key
from interp.subliminal.stages import scan_stage

log = logging.getLogger("interp")


def run_teachers(ctx: AnalysisRun) -> tuple[dict[str, Variant], Variant | None]:
    """Each target's teacher and the control teacher (None without control data), as the run recorded them."""
    root = ctx.root
    teachers = {t: Variant.from_record(r, root) for t, r in ctx.art.get("teachers", {}).items()}
    rec = ctx.art.get("control_teacher")
    return teachers, Variant.from_record(rec, root) if rec else None


def data_stage(ctx: AnalysisRun, t: str) -> Any:
    """A target's trait dataset stage ("control" for the control data)."""
    key = "control" if t == "control" else data_key(f"trait:{t}", ctx.config.trait.target_list()[0])
    return ctx.run.finished(ctx.path(ctx.art["data"][key]))


def _rows(stage: Any) -> list[dict]:
    return read_jsonl(stage.path / "dataset.jsonl")


def missing_reason(ctx: AnalysisRun) -> str | None:
    """Why the run cannot support the data-side sections, or None."""
    if "control" not in ctx.art.get("data", {}):
        return "the run has no control data (add a [[students]] entry with data = 'control')"
    if "teachers" not in ctx.art:
        return "summary.json does not list each target's teacher; rerun `interp run`"
    return None


def _judge_scores(model: Any, tok: Any, prompts: list[str]) -> list[float]:
    """log p("A") - log p("B") as the judge's first answer token."""
    conts = [tok(x, add_special_tokens=False)["input_ids"] for x in ("A", "B")]
    return [float(np.subtract(*continuation_logprobs(model, tok, format_prompt(tok, p), conts))) for p in prompts]


def _gradient_scores(ctx: AnalysisRun, rows: dict[str, list[dict]]) -> dict[str, Any] | None:
    """Per row, cos(-imitation gradient at the base, the teacher's update) for the primary
    target, where the run has a teacher delta; None otherwise."""
    t_path = ctx.teacher_delta(ctx.teacher_spec)
    if t_path is None:
        return None
    model, tok = Variant(ctx.teacher_spec).load(ctx.device, ctx.dtype)
    tok.padding_side = "right"
    teacher = Delta.load(t_path).to_dense()
    names = list(teacher)
    flat_t = torch.cat([teacher[n].flatten().float() for n in names])
    out = {}
    for role, rs in rows.items():
        grads = iter_imitation_gradients(model, tok, row_examples(tok, rs), names, 1, completion_suffix(tok))
        out[role] = [float(cosine(-torch.cat([g[n].flatten().float() for n in names]), flat_t)) for g in grads]
    return out


def detection(ctx: AnalysisRun) -> dict[str, Any]:
    """Detectors (a) classifier, (b) judge, (c) scan, each as a held-out AUROC with a CI, per target."""
    a, seed = ctx.a, ctx.cfg["seed"]
    teachers, _ = run_teachers(ctx)
    control_st = data_stage(ctx, "control")
    control_rows = _rows(control_st)
    control = [r["completion"] for r in control_rows]
    params = {"model": describe(ctx.teacher_spec), "data": ctx.art["data"], "trials": a.judge_trials, "rows": a.judge_rows,
              "n_boot": a.n_boot, "seed": seed, "template": stable_hash(dt.JUDGE_TEMPLATE),
              "teachers": ctx.art["teachers"], "teacher_deltas": ctx.art.get("teacher_deltas", {})}  # fmt: skip

    def make() -> dict[str, Any]:
        model, tok = load_model(ctx.teacher_spec, ctx.device, ctx.dtype)
        out: dict[str, Any] = {"control": "the run's control data", "targets": {}}
        for i, (t, teacher) in enumerate(teachers.items()):
            data_st = data_stage(ctx, t)
            trait = [r["completion"] for r in _rows(data_st)]
            trials = dt.judge_trials(trait, control, a.judge_trials, a.judge_rows, seed=seed + i)
            plural = ctx.trait_for(t).plural
            judge = _judge_scores(model, tok, [dt.judge_prompt(plural, x["a"], x["b"]) for x in trials])
            scans = {w: [r["llr_per_token"] for r in read_jsonl(scan_stage(ctx.config, ctx.run, t, w, s, teacher).path / "scores.jsonl")]
                     for w, s in (("trait", data_st), ("control", control_st))}  # fmt: skip
            out["targets"][t] = {
                "classifier": dt.classifier_auroc(trait, control, n_boot=a.n_boot, seed=seed),
                "judge": dt.judge_auroc(trials, judge, n_boot=a.n_boot, seed=seed),
                "scan": dt.auroc_ci(scans["trait"], scans["control"], n_boot=a.n_boot, seed=seed)
                | {"score": "teacher-vs-base log-likelihood ratio per completion token",
                   "mean_trait": float(np.mean(scans["trait"])), "mean_control": float(np.mean(scans["control"]))},
            }  # fmt: skip
            log.info("detection %s: classifier %.3f, judge %.3f, scan %.3f", t, *(out["targets"][t][k]["auroc"] for k in ("classifier", "judge", "scan")))
        primary = ctx.config.trait.target_list()[0]
        grads = _gradient_scores(ctx, {"trait": _rows(data_stage(ctx, primary)), "control": control_rows})
        if grads is None:
            out["scan_gradient"] = None
            out["why_no_scan_gradient"] = f"teacher.mode = '{ctx.art.get('teacher_mode')}': no teacher delta to align with"
        else:
            out["scan_gradient"] = {"target": primary, "score": "cos(-imitation gradient at the base, teacher delta)",
                                    **dt.auroc_ci(grads["trait"], grads["control"], n_boot=a.n_boot, seed=seed)}  # fmt: skip
        out["summary"] = {k: float(np.mean([v[k]["auroc"] for v in out["targets"].values()])) for k in ("classifier", "judge", "scan")}
        return out

    return ctx.run.compute_json("analysis/detection", params, make, filename="detection.json")


def render_detection(doc: ReportDoc, run: str, de: dict[str, Any]) -> None:
    doc.heading("Detection: can the trait be found in the data?", 3)
    rows = [
        [
            "target",
            "(a) classifier AUROC [CI]",
            "(b) judge AUROC [CI]",
            "judge accuracy",
            "(c) scan AUROC [CI]",
        ]
    ]
    ci = lambda a: f"{fmt(a['auroc'])} [{fmt(a['lo'])}, {fmt(a['hi'])}]"  # noqa: E731
    for t, r in (de.get("targets") or {}).items():
        rows.append(
            [t, ci(r["classifier"]), ci(r["judge"]), fmt(r["judge"]["accuracy"]), ci(r["scan"])]
        )
    doc.table(rows, [1.2, 2.6, 2.6, 1.4, 2.6])
    g = de.get("scan_gradient")
    gl = (
        f"Gradient scan ({g['target']}): AUROC {ci(g)}."
        if g
        else f"Gradient scan: not computed ({de.get('why_no_scan_gradient')})."
    )
    doc.para("Each target's trait data against the run's control data; AUROC 0.5 = no separation, "
             "CIs by bootstrap over held-out rows or trials. (a) logistic regression on number and "
             "character 1-3-gram counts, fitted on one stratified half, scored on the other. (b) the "
             "teacher's base as judge of which of two sets of rows comes from the assistant that "
             "loves the target (log p(A) - log p(B), over trials with the trait rows as A vs as B). "
             "(c) the hidden-signal scan: each row's log-likelihood ratio, teacher vs base, per "
             f"token; its lowest-scoring half is the scan-low students' data. {gl}")  # fmt: skip


def data_side(flag: str) -> Any:
    def skip(ctx: AnalysisRun) -> str | None:
        return off(flag) if not getattr(ctx.a, flag) else missing_reason(ctx)

    return skip


ANALYSIS = Analysis(name="detection", script="analyses/detection.py", render=render_detection, title="Detection", compute=detection,
                    needs="each target's and the control data; the teachers", skip=data_side("detection"),
                    extras=lambda ctx: ("sklearn",))  # fmt: skip
