"""One table and one PDF for a whole sweep, read from its points' stored summaries only.

Per point and student entry: the trait rate and p(target) with their CIs, and per trait arm
gamma with its permutation p. Where the sweep has a `trait.target` axis, the points that differ
only in their target form one trait matrix per student entry (rows: the target its data came
from; columns: the candidates; shift in nats of log-odds vs its base), with gamma, its exact
permutation p over target labels and a t-interval over targets (`interp.subliminal.matrix`).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from interp.fmt import fmt
from interp.stats import t_interval
from interp.store.artifacts import load_run
from interp.store.stages import write_atomic
from interp.subliminal import matrix as mx
from interp.sweep.spec import Sweep, axis_keys, toml_value

TARGET_AXES = ("trait.target", "trait.targets")  # the latter with one target per value


def _target(v: Any) -> str | None:
    if isinstance(v, list):
        return str(v[0]) if len(v) == 1 else None
    return str(v)


def _ci(m: dict[str, Any] | None) -> str:
    return "" if not m else f"{fmt(m['mean'])} [{fmt(m['lo'])}, {fmt(m['hi'])}]"


def _seed_labels(models: dict[str, Any], name: str) -> list[str]:
    return sorted(k for k in models if re.fullmatch(rf"{re.escape(name)}/seed\d+", k))


def point_rows(point: str, values: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    arms = (summary.get("matrix") or {}).get("arms", {})
    rows = []
    for name, st in summary.get("students", {}).items():
        arm = arms.get(name, {})
        rows.append({
            "point": point, **{k: toml_value(v) for k, v in values.items()}, "student": name,
            "trait_rate": st["trait_rate"]["mean"], "trait_rate_ci": _ci(st["trait_rate"]),
            "p_target": st["logprob"]["mean"], "p_target_ci": _ci(st["logprob"]),
            "gamma": arm.get("gamma"), "p_gamma": arm.get("p_gamma"),
        })  # fmt: skip
    return rows


def target_matrices(sweep: Sweep, summaries: dict[str, dict[str, Any]], ci: float = 0.95) -> list[dict[str, Any]]:
    """The sweep-level trait matrices over a target axis (see the module doc)."""
    axis = next((a for a in TARGET_AXES if a in sweep.axes), None)
    if axis is None or len(sweep.axes[axis]) < 2 or any(_target(v) is None for v in sweep.axes[axis]):
        return []
    groups: dict[str, list[str]] = {}
    for p in sweep.points:
        if p.name in summaries:
            rest = ", ".join(f"{k}={toml_value(v)}" for k, v in p.values.items() if k != axis)
            groups.setdefault(rest, []).append(p.name)
    out = []
    for rest, pts in groups.items():
        targets = [str(_target(sweep.point(p).values[axis])) for p in pts]
        sums = [summaries[p] for p in pts]
        cands = sums[0]["trait"]["candidates"]  # each run lists its target first: align by name
        entry: dict[str, Any] = {"group": rest, "points": pts, "targets": targets, "candidates": cands, "arms": {}}
        if len(pts) < 2 or any(set(s["trait"]["candidates"]) != set(cands) for s in sums) \
                or any(t not in cands for t in targets):  # fmt: skip
            entry["why_no_gamma"] = "needs >= 2 finished targets of one category"
            out.append(entry)
            continue
        order = [[s["trait"]["candidates"].index(c) for c in cands] for s in sums]

        def lo(i: int, lab: str, sums: list = sums, order: list = order) -> np.ndarray:
            return np.array(sums[i]["models"][lab]["log_odds"])[order[i]]

        cols = [cands.index(t) for t in targets]
        base = np.stack([lo(i, "base") for i in range(len(sums))])
        teacher = np.stack([lo(i, "teacher") for i in range(len(sums))]) - base
        for name, st in sums[0]["students"].items():
            if st.get("data") != "trait" or st.get("model") != sums[0]["models"]["base"]["model"]:
                continue  # same-base trait students: a cross-model base has its own base scores
            shifts = np.stack([np.mean([lo(i, lab) for lab in _seed_labels(s["models"], name)], axis=0)
                               for i, s in enumerate(sums)]) - base  # fmt: skip
            test = mx.permutation_test(shifts, teacher, cols, seed=0)
            per = mx.per_target_gamma(shifts, cols)
            entry["arms"][name] = {**test.to_dict(), "per_target": per.round(5).tolist(),
                                   "gamma_ci": t_interval(per.tolist(), ci).to_dict(),
                                   "shifts": shifts.round(5).tolist()}  # fmt: skip
        out.append(entry)
    return out


def _ci_level(sweep: Sweep) -> float:
    cfg = next(iter(sweep.configs.values()))[1]
    return float(getattr(getattr(cfg, "eval", None), "ci", 0.95))


def aggregate(sweep: Sweep, root: Path) -> dict[str, Any]:
    """The sweep's result from `<root>/points/*/summary.json` (stale or missing ones named)."""
    summaries, missing = {}, {}
    for p in sweep.points:
        run = load_run(Path(root) / "points" / p.name)
        if run.summary is None:
            missing[p.name] = run.problems.get("summary") or "no summary"
        else:
            summaries[p.name] = run.summary
    rows = [r for p in sweep.points if p.name in summaries for r in point_rows(p.name, p.values, summaries[p.name])]
    return {"sweep": sweep.name, "file": str(sweep.path), "base": str(sweep.base), "axes": sweep.axes, "fixed": sweep.fixed,
            "keys": [k for a in sweep.axes for k in axis_keys(a)],
            "points": {p.name: p.values for p in sweep.points}, "missing": missing, "table": rows,
            "target_matrices": target_matrices(sweep, summaries, _ci_level(sweep))}  # fmt: skip


def sweep_pdf(result: dict[str, Any], out_pdf: Path, sweep: Sweep | None = None, root: Path | None = None) -> Path:
    """The sweep's PDF: what was swept, how it ran, the table and the target matrices; with the
    `sweep` and its folder, the sections of the studies it is (`lora_artifact`)."""
    import tempfile

    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import SimpleDocTemplate

    from interp.report.doc import MARGIN, Doc, ReportInfo

    out_pdf = Path(out_pdf)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="interp-sweep-") as tmp:
        doc = Doc(Path(tmp), ReportInfo(out_pdf, [result["sweep"]]), None)
        doc.para(f"Sweep report: {result['sweep']}", "title")
        doc.para(f"Built {dt.date.today().isoformat()} by interp sweep from the stored summaries of "
                 f"{len(result['points']) - len(result['missing'])} of {len(result['points'])} points. "
                 f"Base config: {result['base']}.")  # fmt: skip
        doc.heading("Grid", 1)
        doc.bullets([f"{k}: {', '.join(toml_value(v) for v in vals)}" for k, vals in result["axes"].items()]
                    + [f"fixed: {k} = {toml_value(v)}" for k, v in result["fixed"].items()])  # fmt: skip
        if result["missing"]:
            doc.para("Points without a summary: " + "; ".join(f"{p} ({why})" for p, why in result["missing"].items()))
        run = result.get("run", {})
        if run:
            doc.para(f"Engine {run.get('engine')}: {run.get('tasks')} tasks, {run.get('stages_computed')} stages "
                     f"computed, {run.get('stages_shared')} stages shared by several points, "
                     f"{run.get('wall_s')} s.")  # fmt: skip
        doc.heading("Per point", 1)
        axes = result.get("keys") or list(result["axes"])
        head = ["point", *axes, "student", "trait rate [CI]", "p(target) [CI]", "gamma", "p"]
        body = [[r["point"], *[r[a] for a in axes], r["student"], r["trait_rate_ci"], r["p_target_ci"],
                 fmt(r["gamma"]) if r["gamma"] is not None else "", fmt(r["p_gamma"]) if r["p_gamma"] is not None else ""]
                for r in result["table"]]  # fmt: skip
        doc.table([head, *body])
        for m in result["target_matrices"]:
            doc.heading(f"Trait matrix over targets ({m['group'] or 'all points'})", 2)
            if "why_no_gamma" in m:
                doc.para(f"No gamma: {m['why_no_gamma']}.")
                continue
            doc.para("gamma: own-target minus other-target shift (nats), exact permutation p over target "
                     "labels, t-interval over targets. Targets: " + ", ".join(m["targets"]) + ".")  # fmt: skip
            doc.table([["student", "gamma", "95% CI over targets", "p"], *[
                [n, fmt(a["gamma"]), f"[{fmt(a['gamma_ci']['lo'])}, {fmt(a['gamma_ci']['hi'])}]", fmt(a["p_gamma"])]
                for n, a in m["arms"].items()]])  # fmt: skip
        if sweep is not None and root is not None:
            from interp.sweep import lora_artifact

            if lora_artifact.applies(sweep):
                try:
                    lora_artifact.pdf_section(doc, sweep, Path(root))
                except Exception as e:  # noqa: BLE001 - a study that cannot be read costs its section, not the PDF
                    doc.para(f"The LoRA-artefact section could not be built: {type(e).__name__}: {e}")
        buf = io.BytesIO()
        pdf = SimpleDocTemplate(buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                                bottomMargin=MARGIN, title=f"interp sweep {result['sweep']}", author="interp")  # fmt: skip
        pdf.build(doc.story)
        write_atomic(out_pdf, buf.getvalue())
    return out_pdf
