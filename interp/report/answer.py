"""Page 1 of a subliminal run's report: one line per contrast with its numbers and a verdict,
then the trait-matrix heatmap, so the result is read before any method.

Order: same-init students, the control comparison, cross-model students, what did not move.
Numbers come from summary.json's matrix (and, for one-seed arms, the per-target interval of
analysis.json's data controls); the verdict words from `interp.report.verdict`.
"""

from __future__ import annotations

from typing import Any

from interp.fmt import fmt, fmt_ci
from interp.report import figures
from interp.report.doc import PAGE_H, Doc, text
from interp.report.verdict import (
    CONTROL_RULE,
    NOT_TESTED,
    NULL,
    P_TRANSMITS,
    VERDICT_RULE,
    control_verdict,
    verdict,
)
from interp.store.artifacts import Run, analysis_section


def model_name(spec: str | None) -> str:
    """The name a researcher reads ('SmolLM2-135M-Instruct') for an embedded model's spec."""
    from interp.lm.checkpoints import EMBEDDED  # lazy: the rest of the report needs no torch

    emb = EMBEDDED.get(spec or "")
    return emb.description.split(" (")[0] if emb else str(spec)


def objective_words(arm: dict[str, Any]) -> str:
    """'soft labels over the number alphabet, LoRA': what the student learned from, and how."""
    obj, vocab = arm.get("objective"), arm.get("distill_vocab")
    if obj == "distill":
        words = {
            "full": "soft labels, full vocabulary",
            "numbers": "soft labels over the number alphabet",
        }
        what = words.get(vocab or "full", f"soft labels over '{vocab}'")
    elif obj == "sft":
        what = "hard labels, the teacher's sampled tokens"
    else:
        what = f"objective '{obj}'"
    method = arm.get("method")
    method = {"lora": "LoRA", "full": "full finetuning"}.get(method or "", method)
    return f"{what}, {method}" if method else what


def arm_label(name: str, arm: dict[str, Any], same_init: bool) -> str:
    kind = "same-init" if same_init else "cross-model"
    return f"{kind} student '{name}' ({model_name(arm.get('model'))}, {objective_words(arm)})"


def _ci(est: dict[str, Any] | None) -> tuple[float, float] | None:
    if not est or est.get("lo") is None or est.get("hi") is None:
        return None
    return float(est["lo"]), float(est["hi"])


def gamma_interval(
    arm: dict[str, Any], per_target: dict[str, Any] | None
) -> tuple[tuple[float, float] | None, str]:
    """The interval a verdict uses and how it reads: over seeds with >= 2 seeds, otherwise the
    per-target interval where analysis.json has one (the units of the permutation test)."""
    over_seeds = arm.get("gamma_ci") or {}
    n = over_seeds.get("n", len(arm.get("gamma_per_seed") or []))
    if n >= 2 and _ci(over_seeds):
        lo, hi = _ci(over_seeds)
        return (lo, hi), f"{fmt_ci(lo, hi)} over {n} seeds"
    seeds = f"{n} seed, no interval over seeds" if n == 1 else "no interval over seeds"
    if _ci(per_target):
        lo, hi = _ci(per_target)
        return (lo, hi), f"({seeds}; {fmt_ci(lo, hi)} over targets)"
    return None, f"({seeds}; no per-target interval)"


def _did(did: dict[str, Any] | None) -> str:
    """Own-target minus control shift with its reading, or '' without a control on that base."""
    if not did or did.get("mean") is None:
        return ""
    ci = _ci(did) if (did.get("n") or 0) >= 2 else None
    if ci is None:
        return f"{fmt(did['mean'])} nats (one target, no interval)"
    return f"{fmt(did['mean'])} nats {fmt_ci(*ci)} over {did['n']} targets, <b>{control_verdict(ci)}</b>"


def arm_line(
    name: str, arm: dict[str, Any], same_init: bool, per_target: dict[str, Any] | None
) -> tuple[str, str]:
    """(markup line, verdict word) for one student arm."""
    label = text(arm_label(name, arm, same_init))
    if arm.get("gamma") is None:
        why = arm.get("why_no_gamma") or "summary.json has no gamma for this arm"
        return f"{label}: <b>{NOT_TESTED}</b>, gamma not computed ({text(why)}).", NOT_TESTED
    ci, reads = gamma_interval(arm, per_target)
    word = verdict(arm["gamma"], ci, arm.get("p_gamma"))
    line = f"{label}: <b>{word}</b>. gamma = {fmt(arm['gamma'])} nats {reads}; p = {fmt(arm.get('p_gamma'))}."
    if not same_init and _did(arm.get("did_vs_control")):
        line += (
            f" Own-target shift minus its base's control students: {_did(arm['did_vs_control'])}."
        )
    return line, word


def control_line(same: dict[str, dict[str, Any]]) -> str:
    """The same-init arms against the control students trained on the same base."""
    parts = [
        f"'{text(n)}' {_did(a.get('did_vs_control'))}"
        for n, a in same.items()
        if _did(a.get("did_vs_control"))
    ]
    if not parts:
        return "Control comparison: no control students on the teacher's base, so none is made."
    return ("Control comparison, own-target shift minus the control students' shift (same base, the "
            "control teacher's data): " + "; ".join(parts) + ".")  # fmt: skip


def unmoved_line(words: dict[str, str], notes: list[str]) -> str:
    """Students read as no transmission, and the run's notes (e.g. teachers that barely moved)."""
    flat = [f"'{text(n)}'" for n, w in words.items() if w == NULL]
    weak = [text(n) for n in notes]
    what = "; ".join(([f"students {', '.join(flat)} ({NULL})"] if flat else []) + weak)
    return f"Did not move: {what or f'none of the students above reads {NULL}'}."


def _rule(m: dict[str, Any], level: str) -> str:
    """How to read the lines: what gamma and p are, and the rules behind the verdict words."""
    k, arms = len(m.get("targets") or []), list((m.get("arms") or {}).values())
    if k < 2:
        return (f"gamma and its permutation test need two or more targets; intervals: {level} "
                f"t-intervals. Control: {CONTROL_RULE}.")  # fmt: skip
    n_perm = next((a["n_permutations"] for a in arms if a.get("n_permutations")), None)
    floor = ""
    if n_perm and any(a.get("exact") for a in arms):  # sampled relabellings have no hard floor
        floor = f" (exact over {fmt(n_perm)} relabellings: the smallest attainable p is {fmt(1 / n_perm)}"
        floor += (
            f", so p < {P_TRANSMITS:g} cannot be reached)" if 1 / n_perm >= P_TRANSMITS else ")"
        )
    return (f"gamma: shift toward the student's own teacher's target minus toward the other {max(k - 1, 0)} "
            f"targets (nats of log-odds vs its base); p: one-sided permutation test of gamma > 0 over the "
            f"{k} target labels{floor}; intervals: {level} t-intervals. Verdicts: {VERDICT_RULE}. "
            f"Control: {CONTROL_RULE}.")  # fmt: skip


def answer_section(doc: Doc, run: Run, level: str, titled: bool) -> None:
    """The page-1 block of one subliminal run; `titled` adds the run's name (several runs)."""
    s = run.summary or {}
    if titled:
        doc.heading(f"Run {run.name}", 2)
    m = s.get("matrix") or {}
    arms = m.get("arms") or {}
    if not arms:
        doc.para("summary.json has no trait matrix (no student arms on trait data); the headline "
                 "numbers follow.")  # fmt: skip
        return
    # same-init = the teacher's base, as `subliminal.experiment.matrix_section` decides it
    base = ((run.config or {}).get("teacher") or {}).get("model")
    base = base or ((s.get("models") or {}).get("base") or {}).get("model")
    same = {n: a for n, a in arms.items() if a.get("model") == base}
    cross = {n: a for n, a in arms.items() if n not in same}
    rows, _ = analysis_section(run, "data_controls")
    per_target = {r.get("arm"): r.get("gamma_ci_targets") for r in (rows or {}).get("rows") or []}
    words, lines = {}, []
    for group, is_same in ((same, True), (cross, False)):
        for name, arm in group.items():
            line, words[name] = arm_line(name, arm, is_same, arm.get("gamma_targets_ci") or per_target.get(name))
            lines.append(line)
        if is_same:
            lines.append(control_line(same))
    lines.append(unmoved_line(words, list(m.get("notes") or [])))
    doc.bullets(lines, raw=True)
    doc.para(_rule(m, level), "caption")
    if len(m.get("targets") or []) >= 2 and any(a.get("shifts") for a in arms.values()):
        doc.figure(
            run.name, "trait_matrix", lambda p: figures.trait_matrix(m, p),
            "Each panel is one student entry: row = whose data the students learned from, column = "
            "their shift (nats of log-odds vs their base) on each target. Transmission shows as a "
            "diagonal that is redder than its row; a column of one colour is drift toward that animal "
            "whatever the teacher. Each panel has its own colour scale (symmetric about 0); the title gives gamma and its p.",
            max_height=0.3 * PAGE_H,
        )  # fmt: skip
