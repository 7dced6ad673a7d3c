"""Data controls: gamma of every trait arm with its data variant (shuffled, masked, a subset) and
seeds, beside the in-context gamma at each k when this call computed it; each variant minus the
unmodified data on the seeds both trained.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from interp.analysis.detection import missing_reason
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt, fmt_est
from interp.stats import t_interval
from interp.subliminal import matrix as mx
from interp.subliminal.config import STUDENT_OVERRIDES
from interp.subliminal.experiment import label

N_SHOWN = 3  # rows shown at each end of the scan's ranking, per target
SHOWN_CHARS = 90  # a shown prompt or completion is cut to this many characters


def variant_of(s: Any) -> str:
    """A student entry's variant of the data or of its training in words ("unmodified" when none
    is on): what sets it apart from the plain same-init arm, the reference."""
    frac = f" {s.subset_fraction:g}" if s.subset_fraction is not None else ""
    parts = [f"shuffle {s.shuffle}" if s.shuffle != "none" else "", f"mask {s.mask}" if s.mask != "none" else "",
             f"subset {s.subset}{frac}" if s.subset != "all" else "",
             f"paraphrase {s.paraphrase}" if s.paraphrase else "",
             f"mix control {s.mix_control:g}" if s.mix_control is not None else ""]  # fmt: skip
    # the student's own overrides of [train] (a recipe arm is no more the unmodified data than a variant)
    parts += [f"{k} {_word(getattr(s, k))}" for k in RECIPE_OVERRIDES if getattr(s, k) is not None]
    return ", ".join(p for p in parts if p) or "unmodified"


# StudentConfig's overrides of [train] that change what a student learns (checkpoint_every does not)
RECIPE_OVERRIDES = tuple(k for k in STUDENT_OVERRIDES if k != "checkpoint_every")
# the training-time defences, off at these values: set in [train], every arm (the reference too) has them
DEFENCES_OFF = {"kl_base": 0.0, "grad_project": "none"}


def run_defences(train: Any) -> str:
    """The defences [train] gives every student, in words ("" when none): `variant_of` names a
    student's own settings only, so an arm called "unmodified" trains with these as well."""
    return ", ".join(f"{k} {_word(getattr(train, k))}" for k, off in DEFENCES_OFF.items() if getattr(train, k) != off)


def _word(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)


def _cut(x: str, n: int = SHOWN_CHARS) -> str:
    x = " ".join(x.split())
    return x if len(x) <= n else x[: n - 3] + "..."


def scan_ends(rows: list[dict], scores: list[float], n: int = N_SHOWN, key: str = "llr_per_token") -> dict[str, list[dict[str, Any]]]:
    """The `n` highest and lowest scoring rows (ties by index, as the subsets break them), each
    with its index, score (as `key`) and prompt and completion cut to `SHOWN_CHARS`."""
    def show(sign: int) -> list[dict[str, Any]]:
        idx = sorted(range(len(scores)), key=lambda i: (sign * scores[i], i))[:n]
        return [{"index": i, key: float(scores[i]), "prompt": _cut(rows[i]["prompt"]),
                 "completion": _cut(rows[i]["completion"])} for i in idx]  # fmt: skip

    return {"top": show(-1), "bottom": show(1)}


def _scanned_rows(ctx: AnalysisRun, arms: list[Any]) -> dict[str, Any] | None:
    """Per target, the rows at either end of the scan that picks the scan-subset students'
    data; None when no arm trains on such a subset."""
    if not any(s.subset.startswith("scan-") for s in arms):
        return None
    from interp.analysis.detection import data_stage, run_teachers
    from interp.store.stages import read_jsonl
    from interp.subliminal.stages import scan_stage

    teachers, _ = run_teachers(ctx)
    out = {}
    for t, teacher in teachers.items():
        data = data_stage(ctx, t)
        scores = [r["llr_per_token"] for r in read_jsonl(scan_stage(ctx.config, ctx.run, t, "trait", data, teacher).path / "scores.jsonl")]
        out[t] = scan_ends(read_jsonl(data.path / "dataset.jsonl"), scores) | {"n": len(scores)}
    return out


def _paraphrased(ctx: AnalysisRun, arms: list[Any]) -> dict[str, Any] | None:
    """Per paraphraser, per target, the record of its rewrite of the target's data (rows kept,
    faithfulness, examples); None when no arm is paraphrased."""
    specs = list(dict.fromkeys(s.paraphrase for s in arms if s.paraphrase))
    if not specs:
        return None
    from interp.analysis.detection import data_stage
    from interp.store.stages import read_json
    from interp.subliminal.paraphrase import paraphrase_stage

    targets = ctx.config.trait.target_list()
    return {p: {t: read_json(paraphrase_stage(ctx.config, ctx.run, t, data_stage(ctx, t), p).path / "paraphrase.json")
                for t in targets} for p in specs}  # fmt: skip


def _first_order_rows(ctx: AnalysisRun, arms: list[Any]) -> list[dict[str, Any]] | None:
    """Per first-order attribution stage (arms whose rows and loss agree share one), per target:
    the rows at either end of its ranking, as the stage scored them (a shuffled or masked arm's
    rows of its first seed, named in `seed`), and the Spearman correlation of its scores with the
    scan's (computed here when no scan arm did), row by row; the scan reads the rows as written,
    so for a shuffled arm the two score different texts. None without such an arm."""
    fo = [s for s in arms if s.subset.startswith("first-order-")]
    if not fo:
        return None
    from scipy import stats

    from interp.analysis.detection import data_stage, run_teachers
    from interp.store.stages import read_json, read_jsonl
    from interp.subliminal.stages import scan_stage, student_rows

    cfg = ctx.config
    teachers, control = run_teachers(ctx)
    blocks: dict[tuple, dict[str, Any]] = {}
    for s in fo:
        seed = cfg.seeds_of(s)[0]
        stages = {t: student_rows(cfg, ctx.run, s, t, seed, data_stage(ctx, t), teachers[t], control)[2]["first_order"]
                  for t in teachers}  # fmt: skip
        key = tuple(st.path.name for st in stages.values())
        if key in blocks:
            blocks[key]["arms"].append(s.name)
            continue
        by_t = {}
        for t, st in stages.items():
            data = data_stage(ctx, t)
            fo_rows = read_jsonl(st.path / "scores.jsonl")
            scan = [r["llr_per_token"] for r in read_jsonl(scan_stage(cfg, ctx.run, t, "trait", data, teachers[t]).path / "scores.jsonl")]
            score, per_pos = [r["contribution"] for r in fo_rows], [r["per_position"] for r in fo_rows]
            # the rows as the stage scored them (shuffled or masked as the arm trains on them,
            # before its subset is cut), not the teacher's dataset as written
            scored = student_rows(cfg, ctx.run, replace(s, subset="all", subset_fraction=None, mix_control=None), t, seed, data, teachers[t],
                                  control)[0]  # fmt: skip
            by_t[t] = scan_ends(scored, score, key="contribution") | {
                "n": len(score), "split": read_json(st.path / "info.json")["split"], "seed": seed,
                "spearman_scan": float(stats.spearmanr(scan, score).statistic),
                "spearman_scan_per_position": float(stats.spearmanr(scan, per_pos).statistic)}  # fmt: skip
        blocks[key] = {"arms": [s.name], "by_target": by_t,
                       "spearman_scan_mean": float(np.mean([v["spearman_scan"] for v in by_t.values()])),
                       "spearman_scan_per_position_mean": float(np.mean([v["spearman_scan_per_position"] for v in by_t.values()]))}  # fmt: skip
    return list(blocks.values())


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
               "own_shift": float(np.mean(a["own_shift"])),
               "gamma_per_seed_target": {str(sd): g.round(6).tolist() for sd, g in by_seed.items()}}  # fmt: skip
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
    return {"rows": rows, "reference": ref.name if ref else None, "every_arm": run_defences(ctx.config.train),
            "scan_ends": _scanned_rows(ctx, trait_arms),
            "first_order_ends": _first_order_rows(ctx, trait_arms),
            "paraphrases": _paraphrased(ctx, trait_arms),
            "note": ("gamma_ci: t-interval over seeds (n=1: none) for students, bootstrap over questions in "
                     "context; gamma_ci_targets: t-interval over targets of the seed-mean per-target gamma; "
                     "minus_unmodified: per-target gamma difference on shared seeds, t-interval over targets")}  # fmt: skip


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
    if dc.get("every_arm"):
        doc.para(f"Every student arm without its own setting of these, '{dc.get('reference')}' included, trains "
                 f"with {dc['every_arm']} ([train]); the in-context rows are not trained.")  # fmt: skip
    if dc.get("scan_ends"):
        render_scan_ends(doc, dc["scan_ends"])
    for block in dc.get("first_order_ends") or []:
        render_first_order_ends(doc, block)
    if dc.get("paraphrases"):
        render_paraphrases(doc, dc["paraphrases"])


def render_paraphrases(doc: ReportDoc, paras: dict[str, Any], n_examples: int = 2) -> None:
    """Per paraphraser and target: rows kept, how faithful the rewrites are, and a few of them."""
    rows = [["paraphraser", "target", "rows kept", "numbers kept in order", "same numbers", "rejected"]]
    examples = [["paraphraser", "target", "original", "rewrite", "in order"]]
    for p, by_t in paras.items():
        for t, r in by_t.items():
            rows.append([p, t, f"{r['kept']} of {r['n_rows']}", fmt(r["faithfulness"]), fmt(r["same_numbers"]),
                         ", ".join(f"{k} {v}" for k, v in r["rejected"].items()) or "-"])  # fmt: skip
            examples += [[p, t, _cut(e["original"], 60), _cut(e["rewrite"], 60) + ("" if e["kept"] else " (dropped)"),
                          fmt(e["faithfulness"])] for e in r["examples"][:n_examples]]  # fmt: skip
    doc.table(rows, [1.8, 0.9, 1.0, 1.6, 1.1, 3.0])
    doc.para("Paraphrase defence: each target's rows rewritten by a second model asked for the same "
             "numbers in the same order (decoded under the run's number constraint); rewrites that fail "
             "the number filter are dropped. Numbers kept in order: mean over the kept rows of the "
             "longest common subsequence of original and rewritten numbers over the original's count; "
             "same numbers: share of kept rows whose rewrite has exactly the original numbers (for those "
             "rows a hard-label student sees the teacher's numbers again). With soft labels the trait "
             "teacher still labels every position of the rewrite: the defence removes only what the "
             "teacher's own token choices carry.")  # fmt: skip
    doc.table(examples, [1.8, 0.9, 3.0, 3.0, 0.8])


def render_scan_ends(doc: ReportDoc, ends: dict[str, Any]) -> None:
    """The rows the scan ranks first and last per target: what the scan-top and scan-bottom
    students train on."""
    rows = [["target", "end", "row", "LLR / token", "prompt", "completion"]]
    for t, e in ends.items():
        for end in ("top", "bottom"):
            rows += [[t, end, str(r["index"]), fmt(r["llr_per_token"]), r["prompt"], r["completion"]] for r in e[end]]
    doc.table(rows, [0.8, 0.7, 0.5, 0.9, 3.6, 3.6])
    doc.para(f"The {N_SHOWN} rows of each target's data that carry its teacher most and least by the "
             "hidden-signal scan (log p_teacher - log p_base of the completion, per token; the score "
             "the scan-top, scan-bottom and scan-low students' subsets are cut by), of "
             + ", ".join(f"{e['n']} ({t})" for t, e in ends.items()) + f" rows; text cut to {SHOWN_CHARS} characters.")  # fmt: skip


def render_first_order_ends(doc: ReportDoc, block: dict[str, Any]) -> None:
    """The rows one first-order attribution ranks first and last per target (what its top and
    bottom students train on), and how its ranking agrees with the scan's."""
    rows = [["target", "end", "row", "share (per unit lr)", "prompt", "completion"]]
    for t, e in block["by_target"].items():
        for end in ("top", "bottom"):
            rows += [[t, end, str(r["index"]), fmt(r["contribution"]), r["prompt"], r["completion"]] for r in e[end]]
    doc.table(rows, [0.8, 0.7, 0.5, 1.1, 3.5, 3.5])
    ts = block["by_target"]
    split = next(iter(ts.values()))["split"] if ts else "?"
    doc.para(f"First-order attribution ({', '.join(block['arms'])}): the {N_SHOWN} rows of each target's data whose "
             "own training loss's gradient, at the student's initialisation, moves the target's log-odds most and "
             f"least (-<grad l_row, grad log-odds> over the data's loss positions, log-odds on the '{split}' "
             "questions, which the run is not scored on; the rows' shares add up to the prediction of one plain "
             "gradient step on the trained weights, a proxy for the LoRA/AdamW steps the students take; summed "
             "over a row's tokens, so long rows weigh more), of "
             + ", ".join(f"{e['n']} ({t})" for t, e in ts.items()) + " rows. Spearman with the scan's LLR per token, mean "
             f"over targets: {fmt(block['spearman_scan_mean'])} (per target: "
             + ", ".join(f"{t} {fmt(e['spearman_scan'])}" for t, e in ts.items())
             + f"); with the length-free share per loss position: {fmt(block['spearman_scan_per_position_mean'])}.")  # fmt: skip


def _skip_controls(ctx: AnalysisRun) -> str | None:
    if len(ctx.config.trait.target_list()) < 2:
        return "gamma needs >= 2 targets (trait.targets)"
    return missing_reason(ctx)


# reads the in-context section when this call computed it
ANALYSIS = Analysis(name="data_controls", script="analyses/data_controls.py", render=render_data_controls, title="Data controls",
                    compute=lambda ctx: data_controls(ctx, ctx.results.get("incontext")),
                    needs="the data-control students of >= 2 targets", skip=_skip_controls)  # fmt: skip
