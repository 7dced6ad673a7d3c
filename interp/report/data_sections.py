"""Report sections for the data side of a subliminal run (issue 11): data controls, divergence
tokens, detection, the in-context control and the first-order prediction, each drawn from its
analysis.json section or stated as absent with the reason recorded there."""

from __future__ import annotations

from typing import Any

from interp.fmt import fmt, fmt_est
from interp.report.doc import Doc
from interp.store.artifacts import Run, analysis_section

DATA_SECTIONS = {"data_controls": "Data controls", "divergence": "Divergence tokens",
                 "detection": "Detection", "incontext": "In-context control",
                 "first_order": "First-order prediction"}  # fmt: skip


# what a section written by another version of the analysis raises when drawn
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError)


def data_side(doc: Doc, run: Run) -> None:
    """Issue 11's sections: each drawn, or stated as absent with the reason analysis.json gives."""
    draw = {"data_controls": _data_controls, "divergence": _divergence, "detection": _detection, "incontext": _incontext,
            "first_order": _first_order}  # fmt: skip
    for key, title in DATA_SECTIONS.items():
        data, why = analysis_section(run, key)
        if data:
            try:
                draw[key](doc, data)
            except MALFORMED as e:
                why = f"analysis.json section '{key}' is malformed ({type(e).__name__}: {e})"
                doc.skip(run.name, key, title, why)
        else:
            doc.skip(run.name, key, title, why or f"no '{key}' section")


def _data_controls(doc: Doc, dc: dict[str, Any]) -> None:
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


def _divergence(doc: Doc, dv: dict[str, Any]) -> None:
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


def _detection(doc: Doc, de: dict[str, Any]) -> None:
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


def _incontext(doc: Doc, ic: dict[str, Any]) -> None:
    doc.heading("In-context control", 3)
    rows = [["k (examples)", "tokens", "gamma (nats) [CI]", "p (perm.)", "own-target shift"]]
    for k, r in (ic.get("by_k") or {}).items():
        rows.append([k, r.get("tokens"), fmt_est(r.get("gamma_ci")) if r.get("gamma") is not None else "n/a",
                     fmt(r.get("p_gamma")), fmt(sum(r["own_shift"]) / len(r["own_shift"]))])  # fmt: skip
    for k, why in (ic.get("skipped") or {}).items():
        rows.append([k, "-", f"skipped: {why}", "", ""])
    doc.table(rows, [1.4, 1.2, 3.8, 1.2, 1.6])
    doc.para(f"The base ({ic.get('model')}, context {ic.get('context')} tokens) reads each target's first "
             "k trait rows as earlier user/assistant turns, then each evaluation question; shifts "
             "are against the same k rows of the control data; CI by bootstrap over the "
             f"{ic.get('n_questions')} questions. No finetuning.")  # fmt: skip


def _first_order(doc: Doc, fo: dict[str, Any]) -> None:
    doc.heading("The theorem's first step: predicted vs observed shifts", 3)
    rows = [
        [
            "arm",
            "predicted gamma (per unit lr)",
            "observed gamma (nats)",
            "row correlation [CI over targets]",
            "p (perm.)",
        ]
    ]
    for name, a in (fo.get("arms") or {}).items():
        rows.append([name, fmt(a["predicted_gamma"]), fmt(a["observed_gamma"]), fmt_est(a["row_correlation_ci"]),
                     fmt(a["p_row_correlation"])])  # fmt: skip
    doc.table(rows, [2.2, 2.4, 2.0, 3.0, 1.0])
    x = fo.get("across_arms") or {}
    across = (f"Across {x['n']} (arm, target) cells, predicted vs observed per-target gamma: Pearson "
              f"{fmt(x['pearson'])} [{fmt(x['pearson_ci'][0])}, {fmt(x['pearson_ci'][1])}] (predictions standardised "
              f"within each arm; {x['interval']}; cells of one target share its data), Spearman {fmt(x['spearman'])}." if "pearson" in x
              else f"Across arms: {x.get('why_no_r', 'not computed')}.")  # fmt: skip
    doc.para("Prediction: -<gradient of the student's own training loss on its first "
             f"{fo.get('rows')} rows of each target's data, gradient of each candidate's log-odds on "
             "the evaluation questions>, at the student's initialisation, over the weights it trains: "
             "the log-odds change of one small gradient step, per unit lr. Observed: the arm's shift "
             "matrix (mean over seeds). Row correlation: per target, Pearson over candidates of "
             "predicted vs observed shifts, mean over targets; p: permutation over target labels. "
             f"{across}")  # fmt: skip
