"""The in-context control (`[analysis] incontext = true`): the trait data as k in-context
examples to the base, scored on the trait with no finetuning.

The paper finds that what a student learns by finetuning on the numbers, the same model does
not pick up by reading them. For each k, each target's first k rows (and the control data's)
become k earlier (user, assistant) turns before each evaluation question; the candidates are
scored after the answer prefix, as in evaluation. The shift of each target's in-context model
against the control data's, per question, gives the matrix, its gamma (own minus other target),
a bootstrap CI over questions and the exact permutation p over target labels.

The examples run once per dataset and k (a shared KV cache); a k whose examples do not fit
the model's context (with room for the question) is skipped and said so.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.fmt import fmt, fmt_est
from interp.lm.models import describe, format_chat, load_model
from interp.lm.score import continuation_logprobs, shared_prefix
from interp.stats import bootstrap_ci
from interp.store.stages import read_jsonl
from interp.subliminal import matrix as mx
from interp.subliminal.evaluate import questions

log = logging.getLogger("interp")
QUESTION_ROOM = 256  # tokens kept free for the question, the answer prefix and a candidate


def gamma_over_questions(lo_trait: np.ndarray, lo_control: np.ndarray, cols: list[int], n_boot: int = 1000,
                         ci: float = 0.95, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """gamma of per-question shifts `lo_trait[target, question, candidate] - lo_control[question,
    candidate]`, with a percentile bootstrap over questions (resampled jointly for all targets)
    and the permutation p over target labels."""
    shifts = np.asarray(lo_trait, dtype=float) - np.asarray(lo_control, dtype=float)[None]
    k, n_q = shifts.shape[0], shifts.shape[1]
    mean = shifts.mean(axis=1)
    g = mx.gamma(mean, cols)
    rng = np.random.default_rng(seed)
    boots = [mx.gamma(shifts[:, rng.integers(0, n_q, n_q)].mean(axis=1), cols) for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    _, p, n_perm = mx.label_permutation_p(lambda order: mx.gamma(mean[order], cols), k, seed=seed)
    return {"gamma": g, "gamma_ci": {"mean": g, "lo": float(min(lo, g)), "hi": float(max(hi, g)), "n": n_q,
                                     "method": "bootstrap over questions"},
            "p_gamma": p, "n_permutations": n_perm, "own_shift": [float(mean[i, c]) for i, c in enumerate(cols)]}  # fmt: skip


def _score(model: Any, tok: Any, turns: list[tuple[str, str]], qs: list[str], prefix_text: str,
           cand_ids: list[list[int]]) -> np.ndarray:  # fmt: skip
    """[question, candidate] log-probs after k in-context turns."""
    pre = shared_prefix(model, tok, format_chat(tok, turns, None)) if turns else None
    return np.stack([continuation_logprobs(model, tok, format_chat(tok, turns, q) + prefix_text, cand_ids, prefix=pre)
                     for q in qs])  # fmt: skip


def incontext(ctx: AnalysisRun, datasets: dict[str, list[dict]]) -> dict[str, Any]:
    """`datasets`: each target's trait rows and "control"'s, in the run's order."""
    a, cfg, spec = ctx.a, ctx.config, ctx.teacher_spec
    targets = cfg.trait.target_list()
    cands = cfg.trait.candidate_list()
    cols = [cands.index(t) for t in targets]
    params = {"model": describe(spec), "targets": targets, "ks": list(a.incontext_k), "eval": cfg.eval.key(),
              "data": ctx.art["data"], "n_boot": a.n_boot, "seed": ctx.cfg["seed"]}  # fmt: skip

    def make() -> dict[str, Any]:
        model, tok = load_model(spec, ctx.device, ctx.dtype)
        trait0 = cfg.trait.trait(targets[0])
        qs = questions(trait0, cfg.eval)
        cand_ids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in cands]
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        base = mx.log_odds_per_question(_score(model, tok, [], qs, trait0.answer_prefix, cand_ids))
        out: dict[str, Any] = {"model": spec, "context": limit, "n_questions": len(qs), "by_k": {}, "skipped": {}}
        n_rows = min(len(rows) for rows in datasets.values())
        for k in a.incontext_k:
            turns = {name: [(r["prompt"], r["completion"]) for r in rows[:k]] for name, rows in datasets.items()}
            longest = max(len(tok(format_chat(tok, tt, None))["input_ids"]) for tt in turns.values())
            if k > n_rows or longest + QUESTION_ROOM > limit:
                why = f"{n_rows} rows in the smallest dataset" if k > n_rows else f"{longest} tokens of examples + {QUESTION_ROOM} > context {limit}"
                out["skipped"][str(k)] = why
                log.info("in-context k=%d skipped: %s", k, why)
                continue
            lo = {name: mx.log_odds_per_question(_score(model, tok, tt, qs, trait0.answer_prefix, cand_ids))
                  for name, tt in turns.items()}  # fmt: skip
            trait_lo = np.stack([lo[t] for t in targets])
            if len(targets) >= 2:
                res = gamma_over_questions(trait_lo, lo["control"], cols, a.n_boot, cfg.eval.ci, ctx.cfg["seed"])
            else:  # one target: its own shift only, with a bootstrap over questions
                own = bootstrap_ci((trait_lo[0] - lo["control"])[:, cols[0]], a.n_boot, cfg.eval.ci, ctx.cfg["seed"])
                res = {"gamma": None, "why_no_gamma": "gamma needs >= 2 targets", "own_shift": [own.mean],
                       "own_shift_ci": own.to_dict()}  # fmt: skip
            res["control_vs_base_own"] = [float((lo["control"] - base)[:, c].mean()) for c in cols]
            res["tokens"] = longest
            out["by_k"][str(k)] = res
            log.info("in-context k=%d: own-target shift %.4f, gamma %s", k, float(np.mean(res["own_shift"])), res["gamma"])
        return out

    return ctx.run.compute_json("analysis/incontext", params, make, filename="incontext.json")



def render_incontext(doc: ReportDoc, run: str, ic: dict[str, Any]) -> None:
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


def _compute(ctx: AnalysisRun) -> dict[str, Any]:
    from interp.analysis.detection import data_stage

    names = [*ctx.config.trait.target_list(), "control"]
    return incontext(ctx, {n: read_jsonl(data_stage(ctx, n).path / "dataset.jsonl") for n in names})


def _skip(ctx: AnalysisRun) -> str | None:
    from interp.analysis.detection import missing_reason

    return off("incontext") if not ctx.a.incontext else missing_reason(ctx)


ANALYSIS = Analysis(
    name="incontext", script="analyses/incontext.py", render=render_incontext, title="In-context control", compute=_compute,
    needs="each target's and the control data, shown in context to the base", skip=_skip,
)  # fmt: skip
