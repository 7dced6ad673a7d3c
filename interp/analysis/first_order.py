"""The theorem's first-order prediction: does the first imitation step predict where a student ends up?

A student at its initialisation theta_0 trained with loss L on dataset D_t moves, after one
gradient step of size lr, every differentiable score f by

    delta f = -lr <grad L(D_t), grad f> + O(lr^2).

With f_c the log-odds of candidate c on the evaluation questions (`interp.subliminal.matrix`:
log p(c) minus the mean log p of the other candidates, mean over questions), the prediction is a
[target, candidate] matrix shaped like the run's observed shift matrix. L is the student's own
training loss (`interp.lm.loss.Objective`: hard-label cross-entropy, or KL to the teacher's
soft labels), on the rows it trained on (data variants and loss masks included).

Gradients are taken w.r.t. the weights the student trains: `target_modules` in `layers` for
LoRA (at B = 0 the first LoRA step moves W by -lr s^2 g A^T A, whose expectation over the
random A points along -g), every parameter of the trained blocks for a full finetune. The
student's later steps (Adam, LoRA's bilinear path, more than one step) are what the comparison
tests, so predictions are reported per unit lr and compared by correlation only:
- `predicted_gamma`: does the first step already favour each dataset's own target?
- `row_correlation`: per target, Pearson over candidates of predicted vs observed shifts, mean
  over targets, its permutation p over target labels (`matrix.permutation_test`) and a
  t-interval over targets;
- `across_arms`: predicted vs observed per-target gamma over every (arm, target) cell: Pearson r
  with the predictions standardised within each arm (their scales differ with the parameter
  set) and its Fisher-z interval, and Spearman over the raw values (cells of one target share
  its data: read them as indicative).
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.fmt import fmt, fmt_est
from interp.lm.finetune import FinetuneConfig, trained_weights
from interp.lm.generate import encode_prompts
from interp.lm.loss import completion_logits
from interp.lm.models import completion_suffix, format_prompt, load_model
from interp.mech.gradient import accumulate, gradients_only, iter_imitation_gradients
from interp.stats import t_interval
from interp.subliminal import matrix as mx

log = logging.getLogger("interp")


def candidate_logprob_gradients(
    model: Any, tok: Any, prompts: Sequence[str], candidates: Sequence[str], names: Sequence[str],
    batch_size: int = 16,
) -> Iterator[tuple[float, dict[str, Tensor]]]:  # fmt: skip
    """Per candidate: (mean over prompts of log p(" " + candidate | prompt), its gradient w.r.t.
    the named weights). The candidate is scored as `interp.subliminal.evaluate` scores it (every
    token of " candidate" after the prompt text)."""
    device = next(model.parameters()).device
    prompt_ids = encode_prompts(tok, list(prompts))
    with gradients_only(model, names) as targets:
        for c in candidates:
            cid = tok(" " + c, add_special_tokens=False)["input_ids"]
            rows = [{"input_ids": p + cid, "n_prompt": len(p)} for p in prompt_ids]
            grads = [
                torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
                for p in targets
            ]
            value = 0.0
            for i in range(0, len(rows), batch_size):
                logits, tgt = completion_logits(
                    model, rows[i : i + batch_size], tok.pad_token_id, device
                )
                # completion_logits gives float32, or float64 for a float64 model
                lp = torch.log_softmax(logits, dim=-1).gather(1, tgt[:, None]).sum() / len(rows)
                value += float(lp.detach())
                accumulate(grads, lp, targets)
            yield value, {n: g.cpu() for n, g in zip(names, grads)}


def _dot(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return float(sum((a[n].double() * b[n].to(a[n].device).double()).sum() for n in a))


def predicted_shifts(
    imitation: Sequence[dict[str, Tensor]],
    candidate_grads: Iterator[tuple[float, dict[str, Tensor]]],
) -> tuple[np.ndarray, np.ndarray]:
    """([dataset, candidate] first-order log-odds change per unit lr, [candidate] base log-probs).

    Row t, column c is -<g_t, grad lo_c> with lo_c = lp_c - mean of the other lp (the matrix's
    log-odds: linear in the log-probs, so its gradient is that combination of theirs)."""
    raw, values = [], []
    for value, grad in candidate_grads:
        raw.append([-_dot(g, grad) for g in imitation])
        values.append(value)
        del grad
    lp = np.array(raw).T  # [dataset, candidate]: first-order change of each log-prob
    k = lp.shape[1]
    if k < 2:
        raise ValueError("the log-odds need >= 2 candidates")
    return (k * lp - lp.sum(axis=1, keepdims=True)) / (k - 1), np.array(values)


def compare(
    predicted: np.ndarray,
    observed: np.ndarray,
    cols: Sequence[int],
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Predicted vs observed [target, candidate] shifts of one arm (see the module docstring)."""
    test = mx.permutation_test(observed, predicted, cols, seed=seed)
    rows = [float(stats.pearsonr(p, o).statistic) for p, o in zip(predicted, observed)]
    return {
        "predicted_gamma": mx.gamma(predicted, cols),
        "predicted_per_target_gamma": mx.per_target_gamma(predicted, cols).tolist(),
        "observed_gamma": mx.gamma(observed, cols),
        "row_correlation": test.correlation,
        "row_correlation_ci": t_interval(rows, ci).to_dict(),
        "p_row_correlation": test.p_correlation,
        "n_permutations": test.n_permutations,
        "predicted": np.round(predicted, 6).tolist(),
    }


def across_arms(
    cells: Sequence[tuple[Sequence[float], Sequence[float]]], ci: float = 0.95
) -> dict[str, Any]:
    """Predicted vs observed per-target gamma over every (arm, target) cell; `cells` holds one
    (predicted, observed) pair of per-target lists per arm.

    Predictions are per unit lr over each arm's own parameters (a full finetune's space is not a
    single layer's), so their scales do not compare across arms: the Pearson r standardises the
    predictions within each arm (each arm contributes its pattern over targets); Spearman is
    over the raw values of all cells."""
    z, raw, obs = [], [], []
    for pred, o in cells:
        p = np.asarray(pred, dtype=float)
        sd = p.std()
        z += list((p - p.mean()) / sd) if sd > 0 else [0.0] * len(p)
        raw += list(p)
        obs += list(o)
    x, y = np.asarray(z), np.asarray(obs, dtype=float)
    if len(x) < 4:
        return {
            "n": len(x),
            "why_no_r": "a correlation with an interval needs >= 4 (arm, target) cells",
        }
    r = stats.pearsonr(x, y)
    lo, hi = r.confidence_interval(ci)
    return {"n": len(x), "n_arms": len(cells), "pearson": float(r.statistic), "pearson_ci": [float(lo), float(hi)],
            "p_pearson": float(r.pvalue), "spearman": float(stats.spearmanr(raw, obs).statistic),
            "interval": "Fisher z", "predicted": "standardised within each arm"}  # fmt: skip


# ---------------------------------------------------------------- the analysis section


# the settings that change the loss or the parameters it is differentiated over (not lr,
# epochs, optimiser, schedule: they act after the first gradient)
LOSS_SETTINGS = (
    "objective",
    "distill_vocab",
    "distill_temperature",
    "method",
    "target_modules",
    "layers",
    "max_seq_len",
)


def _arm_gradients(
    ctx: AnalysisRun, spec: str, settings: FinetuneConfig, rows: dict[str, list[dict]], teachers: dict
) -> list:
    """One imitation gradient per target (CPU, float32), a fresh copy of the base each time."""
    from interp.subliminal.stages import training_inputs

    distill = settings.objective == "distill"
    grads = []
    for t, rs in rows.items():
        model, tok, examples, soft = training_inputs(
            spec, rs, teachers[t] if distill else None, ctx.device, ctx.dtype, settings.default_system_prompt
        )
        names = trained_weights(model, settings)
        grads.append(next(iter_imitation_gradients(
            model, tok, examples, names, len(examples), completion_suffix(tok), micro_batch_size=settings.micro_batch_size,
            max_len=settings.max_seq_len, settings=settings, teacher=soft,
        )))  # fmt: skip
        del model, soft
        gc.collect()
    return grads


def _predict(folder: Path, ctx: AnalysisRun, spec: str, settings: FinetuneConfig, rows: dict[str, list[dict]],
             teachers: dict, questions: list[str], answer_prefix: str, cands: list[str]) -> None:  # fmt: skip
    """One arm's predicted shifts (and the base's candidate log-probs), saved into `folder`."""
    grads = _arm_gradients(ctx, spec, settings, rows, teachers)
    model, tok = load_model(spec, ctx.device, ctx.dtype)
    names = trained_weights(model, settings)
    prompts = [format_prompt(tok, q) + answer_prefix for q in questions]
    cand = candidate_logprob_gradients(model, tok, prompts, cands, names, ctx.config.eval.batch_size)
    pred, base_lp = predicted_shifts(grads, cand)
    np.save(folder / "predicted.npy", pred)
    np.save(folder / "base_logprobs.npy", base_lp)
    del model, grads
    gc.collect()


def first_order(ctx: AnalysisRun) -> dict[str, Any]:
    """Every trait arm of a multi-target run: its first-order prediction against its observed
    shifts (the arm's mean over seeds), on the first `first_order_rows` rows its first seed
    trained on. Arms whose rows and loss settings agree (e.g. optimisers) share one stage."""
    from interp.analysis.detection import data_stage, run_teachers
    from interp.lm.models import describe
    from interp.store.stages import stable_hash
    from interp.subliminal.evaluate import questions
    from interp.subliminal.stages import student_rows

    cfg, summary = ctx.config, ctx.summary
    m = summary["matrix"]
    targets, cands = m["targets"], m["candidates"]
    cols = [cands.index(t) for t in targets]
    teachers, control = run_teachers(ctx)
    trait0 = cfg.trait.trait(targets[0])
    qs = questions(trait0, cfg.eval)
    out: dict[str, Any] = {"targets": targets, "candidates": cands, "rows": ctx.a.first_order_rows,
                           "units": "nats of log-odds per unit lr, first step", "arms": {}}  # fmt: skip
    cells = []
    for s in cfg.students:
        if s.data != "trait" or s.name not in m["arms"]:
            continue
        spec, settings, seed = cfg.student_model(s), s.settings(cfg.train), cfg.seeds_of(s)[0]
        rows = {t: student_rows(cfg, ctx.run, s, t, seed, data_stage(ctx, t), teachers[t], control)[0][: ctx.a.first_order_rows]
                for t in targets}  # fmt: skip
        distill = settings.objective == "distill"
        params = {"base": describe(spec), "loss": {k: getattr(settings, k) for k in LOSS_SETTINGS},
                  "rows": stable_hash(rows), "teachers": {t: v.identity() for t, v in teachers.items()} if distill else None,
                  "questions": stable_hash([trait0.answer_prefix, qs]), "candidates": cands,
                  "dtype": cfg.dtype, "device": cfg.device}  # fmt: skip

        st = ctx.run.compute("analysis/first-order", params, functools.partial(
            _predict, ctx=ctx, spec=spec, settings=settings, rows=rows, teachers=teachers,
            questions=list(qs), answer_prefix=trait0.answer_prefix, cands=cands))  # fmt: skip
        pred = np.load(st.path / "predicted.npy")
        observed = np.array(m["arms"][s.name]["shifts"])
        res = compare(pred, observed, cols, seed=cfg.seed, ci=cfg.eval.ci)
        out["arms"][s.name] = {"model": spec, "seed_of_rows": seed, "stage": st.path.name, **res}
        cells.append(
            (res["predicted_per_target_gamma"], mx.per_target_gamma(observed, cols).tolist())
        )
    out["across_arms"] = across_arms(cells, cfg.eval.ci)
    return out



def render_first_order(doc: ReportDoc, run: str, fo: dict[str, Any]) -> None:
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


def _skip(ctx: AnalysisRun) -> str | None:
    if not ctx.a.first_order:
        return off("first_order")
    if len(ctx.config.trait.target_list()) < 2:
        return "the prediction is compared on the trait matrix: needs >= 2 targets (trait.targets)"
    if "teachers" not in ctx.art:
        return "summary.json does not list each target's teacher; rerun `interp run`"
    return None


ANALYSIS = Analysis(
    name="first_order", script="analyses/first_order.py", render=render_first_order, title="First-order prediction", compute=first_order,
    needs="every target's teacher and the students' training data", skip=_skip,
)  # fmt: skip
