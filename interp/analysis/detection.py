"""The data-side sections of `interp analyze` (`[analysis] detection = true`): divergence tokens
and the three detectors of `interp.mech.detection`, per target of the run.

Each target's trait data is compared with the run's control data (its control teacher's). The
divergence and scan stages are the ones the experiment's masked and scan-filtered students use
(`interp.subliminal.stages`), so a run that trained them reuses them here.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import torch

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.fmt import fmt, fmt_est
from interp.lm.delta import Delta
from interp.lm.models import Variant, completion_suffix, describe, format_prompt, load_model
from interp.lm.score import continuation_logprobs, row_examples
from interp.mech import detection as dt
from interp.mech.gradient import iter_imitation_gradients
from interp.stats import cosine, t_interval
from interp.store.stages import read_jsonl, stable_hash
from interp.subliminal import matrix as mx
from interp.subliminal.experiment import data_key, label
from interp.subliminal.stages import divergence_stage, scan_stage

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


def divergence(ctx: AnalysisRun) -> dict[str, Any]:
    """Per target: the share of completion positions where the trait teacher's argmax differs
    from the control teacher's, and the most frequent (written -> trait argmax) pairs there."""
    teachers, control = run_teachers(ctx)
    _, tok = load_model(ctx.teacher_spec, ctx.device, ctx.dtype)
    out = {}
    for t, teacher in teachers.items():
        st = divergence_stage(ctx.config, ctx.run, t, data_stage(ctx, t), teacher, control)
        rows = read_jsonl(st.path / "divergence.jsonl")
        n_pos = sum(r["n_positions"] for r in rows)
        n_div = sum(len(r["positions"]) for r in rows)
        first = [0 in r["positions"] for r in rows if r["n_positions"]]
        pairs = Counter((tok.decode([w]), tok.decode([a])) for r in rows for w, a in zip(r["written"], r["trait_argmax"]))
        out[t] = {"share": n_div / max(1, n_pos), "positions": n_pos, "divergent": n_div,
                  "rows_with_any": float(np.mean([bool(r["positions"]) for r in rows])),
                  "share_at_first_position": float(np.mean(first)) if first else None,
                  "top_pairs": [{"written": w, "trait_argmax": a, "count": c} for (w, a), c in pairs.most_common(8)]}  # fmt: skip
    return {"against": "control teacher", "targets": out}


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



def render_divergence(doc: ReportDoc, run: str, dv: dict[str, Any]) -> None:
    doc.heading("Divergence tokens", 3)
    rows = [
        [
            "target",
            "share of positions",
            "rows with any",
            "share at first position",
            "most frequent (written -> trait argmax)",
        ]
    ]
    for t, r in (dv.get("targets") or {}).items():
        pairs = ", ".join(
            f"{p['written']!r}->{p['trait_argmax']!r} ({p['count']})" for p in r["top_pairs"][:4]
        )
        rows.append(
            [t, fmt(r["share"]), fmt(r["rows_with_any"]), fmt(r["share_at_first_position"]), pairs]
        )
    doc.table(rows, [1.2, 1.6, 1.4, 1.8, 5.0])
    doc.para("Positions of each trait dataset (teacher-forced) where the trait teacher's argmax "
             "differs from the control teacher's for the same prefix (Schrodi et al. 2025). "
             "Students with mask = 'divergence' are trained without loss at these positions; "
             "mask = 'random' leaves out as many random positions per row.")  # fmt: skip


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


def _data_side(flag: str) -> Any:
    def skip(ctx: AnalysisRun) -> str | None:
        return off(flag) if not getattr(ctx.a, flag) else missing_reason(ctx)

    return skip


def _skip_controls(ctx: AnalysisRun) -> str | None:
    if len(ctx.config.trait.target_list()) < 2:
        return "gamma needs >= 2 targets (trait.targets)"
    return missing_reason(ctx)


ANALYSES = [
    Analysis(name="divergence", render=render_divergence, title="Divergence tokens", compute=divergence,
             needs="each target's and the control teacher's data and weights", skip=_data_side("detection")),
    Analysis(name="detection", render=render_detection, title="Detection", compute=detection,
             needs="each target's and the control data; the teachers", skip=_data_side("detection"),
             extras=lambda ctx: ("sklearn",)),
    # reads the in-context section when this call computed it
    Analysis(name="data_controls", render=render_data_controls, title="Data controls",
             compute=lambda ctx: data_controls(ctx, ctx.results.get("incontext")),
             needs="the data-control students of >= 2 targets", skip=_skip_controls),
]  # fmt: skip
