"""Report sections of the MLP auxiliary-logit experiment, and of kinds without a layout."""

from __future__ import annotations

from typing import Any

from interp.fmt import fmt, fmt_est
from interp.report import figures
from interp.report.doc import Doc
from interp.store.artifacts import Run

MLP_KINDS = ("reference", "teacher", "same-init/aux", "cross-init/aux", "same-init/all",
             "cross-init/all")  # fmt: skip


def mlp_run(doc: Doc, run: Run) -> None:
    s = run.summary or {}
    per_m = s.get("per_m") or {}
    doc.heading("Headline numbers", 2)
    rows = [["m", "model", "test accuracy [CI]", "seeds", "cos(dS, dT) overall [CI]",
             "first-step grad cos [CI]", "share grad > 0"]]  # fmt: skip
    for m in sorted(per_m, key=int):
        kinds = [k for k in MLP_KINDS if k in per_m[m]] + sorted(set(per_m[m]) - set(MLP_KINDS))
        for kind in kinds:
            r = per_m[m][kind]
            rows.append([m, kind, fmt_est(r.get("acc")), fmt((r.get("acc") or {}).get("n")),
                         fmt_est((r.get("cos_dS_dT") or {}).get("overall")) if "cos_dS_dT" in r else "",
                         fmt_est(r.get("grad_cos")) if "grad_cos" in r else "",
                         fmt(r.get("grad_dot_positive_fraction")) if "grad_cos" in r else ""])  # fmt: skip
    doc.table(rows, [0.4, 1.2, 2.0, 0.6, 2.0, 2.0, 0.8])
    doc.para("Means over seeds with 95% t-intervals over seeds; n/a = undefined (e.g. a student "
             "that never moved has no direction). reference = the untrained init.")  # fmt: skip
    _mlp_against_cross(doc, per_m)
    _mlp_methods(doc, run, s)
    _mlp_figures(doc, run, s)


def _mlp_against_cross(doc: Doc, per_m: dict[str, Any]) -> None:
    """Each student kind minus the cross-init students of its target (summaries that have it)."""
    rows = [["m", "model", "accuracy minus cross-init [95% Welch CI]", "p"]]
    for m in sorted(per_m, key=int):
        for kind, r in per_m[m].items():
            d = r.get("acc_minus_cross")
            if d:
                rows.append([m, kind, fmt_est(d), fmt(d.get("p"))])
    if len(rows) > 1:
        doc.heading("Against the cross-init students", 2)
        doc.table(rows, [0.4, 2.0, 3.0, 1.0])
        doc.para("Difference of mean held-out accuracy from the cross-init students with the same "
                 "distillation target (another seed's init everywhere), Welch interval over seeds. "
                 "shared-hidden: the teacher's init in the hidden layers, another seed's output "
                 "layer; shared-head: the reverse; aux-proj: aux logits with each step's component "
                 "along the class-logit imitation gradient removed.")  # fmt: skip


def _mlp_methods(doc: Doc, run: Run, s: dict[str, Any]) -> None:
    doc.heading("Methods", 2)
    cfg = run.config
    if cfg is None:
        doc.skip(run.name, "methods", "Methods", run.problems.get("config", "no config.toml"))
    else:
        data, dc = s.get("data") or {}, cfg.get("data") or {}
        t, st, sw = (cfg.get(k) or {} for k in ("teacher", "student", "sweep"))
        steps = s.get("optimizer_steps") or {}
        doc.bullets([
            f"Data: {data.get('source', dc.get('source'))}, {fmt(data.get('n_train'))} training / "
            f"{fmt(data.get('n_test'))} test images of {fmt(data.get('d_in'))} inputs; "
            f"{fmt(data.get('n_noise'))} uniform-noise images for the students.",
            f"Model: MLP {fmt(data.get('d_in'))}-{'-'.join(str(h) for h in (cfg.get('model') or {}).get('hidden', []))}"
            "-(10 + m); init N(0, 1/sqrt(fan-in)), zero biases.",
            f"Teacher: cross-entropy on the 10 class logits of real digits, Adam lr {fmt(t.get('lr'))}, "
            f"batch {fmt(t.get('batch_size'))}, {fmt(t.get('epochs'))} epochs ({fmt(steps.get('teacher'))} steps).",
            f"Students: KL to the teacher on noise over the {' / '.join(st.get('targets') or [])} "
            f"logits, from inits {' / '.join(st.get('inits') or [])} (cross = another seed's init, "
            f"a derangement); Adam lr {fmt(st.get('lr'))}, batch {fmt(st.get('batch_size'))}, "
            f"{fmt(st.get('epochs'))} epochs ({fmt(steps.get('student'))} steps).",
            f"Sweep: m = {sw.get('m')}; {fmt(s.get('n_models', sw.get('n_models')))} seeds per m "
            f"(run seed {fmt(cfg.get('seed'))}); chance accuracy {fmt(s.get('chance'))}.",
        ])  # fmt: skip
        if s.get("notes"):
            doc.para("Notes recorded with the run:")
            doc.bullets(s["notes"])


def _mlp_figures(doc: Doc, run: Run, s: dict[str, Any]) -> None:
    per_m = s.get("per_m") or {}
    doc.heading("Figures", 2)
    if per_m:
        doc.figure(
            run.name, "mlp_accuracy", lambda p: figures.mlp_accuracy(per_m, s.get("chance"), p),
            "Held-out digit accuracy against the number of auxiliary logits m (log scale), mean "
            "over seeds with 95% t-intervals. Blue: students distilled on the aux logits only, red: "
            "on all logits; solid: same init as the teacher, dashed: another seed's init. "
            "Subliminal learning = solid blue above chance and above dashed blue.",
        )  # fmt: skip
        has_cos = any("cos_dS_dT" in r for m in per_m.values() for r in m.values())
        if has_cos:
            doc.figure(
                run.name, "mlp_cosine", lambda p: figures.mlp_cosine(per_m, p),
                "Cosine between each student's parameter update and its teacher's, per layer and "
                "overall, one panel per m; bars = mean over seeds, whiskers = 95% t-intervals. "
                "Same-init students (solid) move along the teacher; cross-init ones (pale) do not.",
            )  # fmt: skip
        else:
            doc.missing_figure(
                run.name, "mlp_cosine", "Cosine per layer", "no cos_dS_dT in summary"
            )
    else:
        for fid in ("mlp_accuracy", "mlp_cosine"):
            doc.missing_figure(run.name, fid, f"Figure {fid}", "summary.json has no per_m block")


def mlp_seeds(run: Run) -> str:
    """The seeds line of the run's provenance."""
    return (
        f"{fmt((run.summary or {}).get('n_models'))} model seeds per m, derived from the run seed"
    )


def other_run(doc: Doc, run: Run) -> None:
    doc.skip(run.name, "results", "Results",
             f"experiment kind '{run.experiment}' has no report layout; provenance only (appendix)")  # fmt: skip


def other_seeds(run: Run) -> str:
    return "see config.toml"
