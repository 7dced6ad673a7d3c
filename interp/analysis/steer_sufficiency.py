"""Is the teacher's trait direction sufficient? Add it to the base at one layer and score the base.

For a trait-matrix run (>= 2 targets, one teacher per target), per layer l the direction of
target t is v_l[t] = mean over held-out number rows of teacher_t - base (resid_post averaged over
each row's answer tokens, random answers no model wrote: `interp.mech.shift_matrix.directions` on
the recordings `matrix_mechanisms` and `shift_ablation` make and share as cached stages), on the
teacher's base with the run's teachers. The base is steered (`interp.lm.steer.add_direction`:
alpha * v added to block l's output at every position) at one layer l of
`sufficiency_layers` spread over depth, for each alpha in `sufficiency_scales`, with v:

- `own`: target t's teacher's v_l[t], the raw mean difference (not a unit vector; it keeps the
  part every target's teacher shares, e.g. "a system prompt is present");
- `random`: control, a direction drawn with the covariance of the base's activations on those
  rows (`interp.mech.ablation.covariance_directions`), one draw per target, scaled to |v_l[t]|.

Each steered base is scored as the run evaluates: the log-odds of every candidate (log-prob score
on the run's questions) and, with `sufficiency_rate`, the sampled trait rate of target t
(`trait_rate`, the run's [eval] settings and seed). The unsteered base is scored in the same
stage. Per (source, layer, alpha):

- gamma of the steered bases (`interp.subliminal.matrix`): row t is the base steered with target
  t's vector minus the unsteered base; its permutation p over target labels and a t-interval
  over targets (one base: the targets are the units);
- the rate shift: mean over targets of (steered rate of t - unsteered rate of t), t-interval;
- own cells only: own minus random per-target gamma at the same layer and alpha, paired over
  targets, with its t-interval and one-sided p (own > random).

Seeds (`sufficiency_seeds`, default the run's seed alone): each seed is a replicate of the whole
measurement, with its own draw of the held-out number rows v_l is estimated on, its own random
control and its own sampling seed (the steered base has no student, so no training seed enters).
The run's own seed uses the rows `matrix_mechanisms` records; any other seed s draws its rows with
`derived_seed(run seed, "sufficiency-rows", s)`, never a stream the run's data, the notebook's
'numbers' set or the entanglement prompts use. With several seeds, the cells above are computed
on the shifts averaged over seeds (per-target gamma is linear in them), and each cell adds
`over_seeds`: its gamma per seed with a t-interval over seeds, and for own cells own minus random
per seed, its t-interval and one-sided paired t p over seeds (how far the estimate of the
direction, not the choice of targets, moves the result). Two seeds leave one degree of freedom
(t quantile 12.7 at 95%): use three or more. The scale reference, the rows' count and the
teachers' description are the first seed's.

So that the reader can judge alpha, each layer records |v_l[t]| and the base's typical residual
norm there (median over the rows of |resid_post averaged over answer tokens|), and each cell
alpha |v_l| / |h_l|.

Cost: seeds x targets x (1 + 2 x sufficiency_layers x len(sufficiency_scales)) scorings of the
base, each a log-prob score plus (with `sufficiency_rate`) a sampling of samples_per_question
answers per question; one base load; per seed, the recordings of the base and each teacher on
`n_answer_rows` rows (the run's seed shares them with `matrix_mechanisms`). Each target's scores are a cached stage. The quickstart's 6
targets with the defaults (3 layers, 3 scales): 6 x 19 = 114 log-prob scorings and 114 samplings of
25 questions x 4 answers on SmolLM2-135M.
"""

from __future__ import annotations

import functools
import gc
import logging
from contextlib import nullcontext
from typing import Any

import numpy as np
from jaxtyping import Float
from scipy import stats
from torch import Tensor

from interp.analysis import matrix_mechanisms as mm
from interp.analysis import shift_ablation as sa
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.extras import backend_module
from interp.fmt import fmt, fmt_est
from interp.lm.models import Variant, load_model
from interp.lm.steer import add_direction
from interp.mech.ablation import covariance_directions
from interp.registry import derived_seed
from interp.stats import t_interval
from interp.subliminal import matrix as mx
from interp.subliminal.evaluate import EvalConfig, logprob_score, trait_rate
from interp.subliminal.traits import AnyTrait

log = logging.getLogger("interp")

SOURCES = ("own", "random")
UNSTEERED = "none"

Cell = tuple[str, int, float]  # (direction source, layer, alpha)


# ---------------------------------------------------------------- the plan (pure)


def plan_cells(layers: list[int], scales: list[float]) -> list[Cell]:
    """Every (source, layer, alpha): own then random, layers and scales in the given order."""
    if not layers or not scales:
        raise ValueError(f"need >= 1 layer and >= 1 scale, got {layers} and {scales}")
    return [(src, layer, float(a)) for src in SOURCES for layer in layers for a in scales]


def cell_name(cell: Cell) -> str:
    """The cell's key in a stage (repr keeps distinct scales distinct)."""
    src, layer, a = cell
    return f"{src}:L{layer}:x{float(a)!r}"


def matched_random(
    own: Float[Tensor, "target layer d_model"], unit: Float[Tensor, "target layer d_model"]
) -> Float[Tensor, "target layer d_model"]:
    """The random draws rescaled to the own directions' norms: unit[t, l] / |unit[t, l]| * |own[t, l]|."""
    if own.shape != unit.shape:
        raise ValueError(f"own and random directions differ in shape: {tuple(own.shape)}, {tuple(unit.shape)}")
    return unit / unit.norm(dim=-1, keepdim=True) * own.norm(dim=-1, keepdim=True)


def scale_reference(
    own: Float[Tensor, "target layer d_model"], base: Float[Tensor, "row layer d_model"], layers: list[int]
) -> dict[str, dict[str, Any]]:
    """Per layer: |v_l[t]| per target and their mean, and the base's median |h_l| over rows."""
    out = {}
    for layer in layers:
        norms = own[:, layer].float().norm(dim=-1)
        resid = float(base[:, layer].float().norm(dim=-1).median())
        out[str(layer)] = {"direction_norm": round(float(norms.mean()), 6), "base_resid_norm": round(resid, 6),
                           "direction_norm_per_target": norms.round(decimals=6).tolist()}  # fmt: skip
    return out


# ---------------------------------------------------------------- the statistics (pure)


def gamma_summary(
    shifts: Float[np.ndarray, "target candidate"], cols: list[int], ci: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """gamma of one base steered per target (row t: steered with t's vector, minus the unsteered
    base), its permutation p over target labels, and its t-interval over targets."""
    s = np.asarray(shifts, dtype=float)
    stat, p, n_perm = mx.label_permutation_p(lambda order: mx.gamma(s[order], cols), s.shape[0], seed=seed)
    per_target = mx.per_target_gamma(s, cols)
    return {"gamma": stat, "p_gamma": p, "n_permutations": n_perm,
            "gamma_ci": t_interval(per_target, ci).to_dict() | {"over": "targets"},
            "gamma_per_target": per_target.round(6).tolist()}  # fmt: skip


def rate_shift(steered: Float[np.ndarray, " target"], base: Float[np.ndarray, " target"], ci: float = 0.95) -> dict[str, Any]:
    """Mean over targets of steered minus unsteered rate of each target, t-interval over targets."""
    d = np.asarray(steered, dtype=float) - np.asarray(base, dtype=float)
    return t_interval(d, ci).to_dict() | {"over": "targets", "per_target": d.round(6).tolist()}


def versus_control(own: np.ndarray, control: np.ndarray, ci: float = 0.95, over: str = "targets") -> dict[str, Any]:
    """Own minus control gamma, paired over `over` (targets, or seeds): t-interval and the
    one-sided t-test p of own > control (None when the differences have no spread)."""
    d = np.asarray(own, dtype=float) - np.asarray(control, dtype=float)
    p = None
    if d.size >= 2 and d.std(ddof=1) > 0:
        p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    return t_interval(d, ci).to_dict() | {"over": over, "p": p, "test": "paired t, one-sided (own > random)"}


def over_seeds(per_seed: list[list[dict[str, Any]]], ci: float = 0.95) -> list[dict[str, Any]]:
    """Per cell (in plan order), from each seed's `summarise_cells`: gamma per seed with its
    t-interval over seeds, and for own cells own minus the random cell at the same layer and
    alpha per seed, paired over seeds."""
    if len({tuple((c["source"], c["layer"], c["alpha"]) for c in cells) for cells in per_seed}) != 1:
        raise ValueError("every seed needs the same cells")
    out = []
    for j, c in enumerate(per_seed[0]):
        g = np.array([cells[j]["gamma"] for cells in per_seed])
        rec: dict[str, Any] = {"seeds": len(per_seed), "gamma_per_seed": g.round(6).tolist(),
                               "gamma_ci": t_interval(g, ci).to_dict() | {"over": "seeds"}}  # fmt: skip
        k = next((i for i, r in enumerate(per_seed[0])
                  if r["source"] == "random" and (r["layer"], r["alpha"]) == (c["layer"], c["alpha"])), None)  # fmt: skip
        if c["source"] == "own" and k is not None:
            rec["vs_random"] = versus_control(g, np.array([cells[k]["gamma"] for cells in per_seed]), ci, "seeds")
        out.append(rec)
    return out


def summarise_cells(
    plan: list[Cell], base_lo: Float[np.ndarray, "target candidate"],
    steered_lo: Float[np.ndarray, "cell target candidate"], cols: list[int],
    base_rate: np.ndarray | None = None, steered_rate: np.ndarray | None = None,
    reference: dict[str, dict[str, Any]] | None = None, ci: float = 0.95, seed: int = 0,
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per cell: gamma, p, CI, the rate shift, alpha |v| / |h|, and (own cells) own
    minus the random cell at the same layer and alpha."""
    base_lo, steered_lo = np.asarray(base_lo, dtype=float), np.asarray(steered_lo, dtype=float)
    if steered_lo.shape != (len(plan), *base_lo.shape):
        raise ValueError(f"steered log-odds {steered_lo.shape} do not match {len(plan)} cells x {base_lo.shape}")
    out = []
    for j, (src, layer, a) in enumerate(plan):
        ref = (reference or {}).get(str(layer))
        ratio = a * ref["direction_norm"] / ref["base_resid_norm"] if ref and ref["base_resid_norm"] > 0 else None
        rate = None if steered_rate is None or base_rate is None else rate_shift(steered_rate[j], base_rate, ci)
        out.append({"source": src, "layer": layer, "alpha": a, "scale_ratio": ratio,
                    **gamma_summary(steered_lo[j] - base_lo, cols, ci, seed), "rate_shift": rate})  # fmt: skip
    index = {(c["source"], c["layer"], c["alpha"]): c for c in out}
    for c in out:
        rnd = index.get(("random", c["layer"], c["alpha"]))
        if c["source"] == "own" and rnd is not None:
            c["vs_random"] = versus_control(np.array(c["gamma_per_target"]), np.array(rnd["gamma_per_target"]), ci)
    return out


# ---------------------------------------------------------------- scoring (a model in, scores out)


def steered_scores(
    model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig,
    cells: dict[str, tuple[int, Tensor, float] | None], rate: bool = True, seed: int = 0,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """{cell: {log_odds of every candidate, trait rate or None}}: the model with `alpha * vector`
    added to block `layer`'s output at every position (`add_direction`); None: unsteered."""
    out = {}
    for name, cell in cells.items():
        with nullcontext() if cell is None else add_direction(model, cell[0], cell[1], cell[2]):
            res: dict[str, Any] = {"log_odds": logprob_score(model, tok, trait, settings, seed=seed)["log_odds"]}
            res["rate"] = trait_rate(model, tok, trait, settings, seed=seed)["mean"] if rate else None
        out[name] = res
    return out


# ---------------------------------------------------------------- the run


def _cells_of(i: int, plan: list[Cell], own: Tensor, rnd: Tensor) -> dict[str, tuple[int, Tensor, float] | None]:
    """Target i's cells: unsteered first, then each (source, layer, alpha) with its vector."""
    vectors = {"own": own, "random": rnd}
    return {UNSTEERED: None} | {cell_name(c): (c[1], vectors[c[0]][i, c[1]], c[2]) for c in plan}


def _score_targets(ctx: AnalysisRun, spec: str, plan: list[Cell], own: Tensor, rnd: Tensor, seed: int,
                   base: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Per target (in order): its cells' scores with sampling `seed`, a cached stage each; `base()`
    loads the base (once, if any stage is missing)."""
    targets, settings = ctx.summary["trait"]["targets"], ctx.config.eval
    rate = bool(ctx.a.sufficiency_rate)
    out = []
    for i, t in enumerate(targets):
        if list(ctx.trait_for(t).candidates) != ctx.summary["matrix"]["candidates"]:  # the matrix's columns
            raise ValueError(f"target {t}'s candidates are not the run's trait-matrix candidates")
        cells = _cells_of(i, plan, own, rnd)
        params = {"base": Variant(spec).identity(), "eval": settings.key(), "trait": ctx.cfg["trait"], "target": t,
                  "candidates": ctx.summary["matrix"]["candidates"], "seed": seed, "rate": rate,
                  "cells": {k: None if c is None else {"layer": c[0], "alpha": c[2], "vector": sa._digest(c[1])}
                            for k, c in cells.items()}}  # fmt: skip

        def make(cells=cells, t=t) -> dict[str, Any]:
            log.info("steer sufficiency: target %s, %d steered scorings%s", t, len(cells) - 1, " with sampling" * rate)
            model, tok = base()
            return {"scores": steered_scores(model, tok, ctx.trait_for(t), settings, cells, rate, seed)}

        res = ctx.run.compute_json(f"analysis/steer-sufficiency/{t}", params, make, filename="scores.json")
        out.append(res["scores"])
    return out


def rows_seed(run_seed: int, seed: int) -> int:
    """The seed of replicate `seed`'s held-out rows (`mm.answer_rows`): the run's own for the run's
    seed (the rows `matrix_mechanisms` records), else one derived from both."""
    return run_seed if seed == run_seed else derived_seed(run_seed, "sufficiency-rows", seed)


def _directions(ctx: AnalysisRun, spec: str, seed: int) -> dict[str, Any]:
    """One seed's rows, recordings, directions [target, layer, d], cells and random control."""
    rows = mm.answer_rows(ctx.a.n_answer_rows, rows_seed(ctx.cfg["seed"], seed))
    refs = sa._refs(ctx, spec, rows)
    own = refs["own"]
    layers = sa.spread_layers(own.shape[1], ctx.a.sufficiency_layers)
    unit = covariance_directions(refs["base"], derived_seed(seed, "steer-sufficiency"), n_draws=own.shape[0])
    return {"refs": refs, "rows": rows, "layers": layers, "plan": plan_cells(layers, list(ctx.a.sufficiency_scales)),
            "random": matched_random(own, unit), "reference": scale_reference(own, refs["base"], layers)}  # fmt: skip


def _replicate(ctx: AnalysisRun, spec: str, seed: int, d: dict[str, Any], base: Any) -> dict[str, Any]:
    """One seed's scores with its directions `d`. Arrays: base_lo [target, candidate], steered
    [cell, target, candidate], rates or None."""
    plan = d["plan"]
    scores = _score_targets(ctx, spec, plan, d["refs"]["own"], d["random"], seed, base)
    rate = bool(ctx.a.sufficiency_rate)
    return d | {
        "base_lo": np.array([s[UNSTEERED]["log_odds"] for s in scores]),
        "steered": np.array([[s[cell_name(c)]["log_odds"] for s in scores] for c in plan]),
        "base_rate": np.array([s[UNSTEERED]["rate"] for s in scores]) if rate else None,
        "steered_rate": np.array([[s[cell_name(c)]["rate"] for s in scores] for c in plan]) if rate else None,
    }  # fmt: skip


def _mean(arrays: list[np.ndarray | None]) -> np.ndarray | None:
    return None if arrays[0] is None else np.mean(np.stack(arrays), axis=0)


def steer_sufficiency(ctx: AnalysisRun) -> dict[str, Any] | None:
    """gamma and the trait-rate shift of the base steered along each target's direction, per
    (source, layer, alpha), over the seeds `sufficiency_seeds` (module docstring)."""
    targets = ctx.summary["trait"]["targets"]
    cands = ctx.summary["matrix"]["candidates"]
    cols = [cands.index(t) for t in targets]
    spec, ci = ctx.teacher_spec, ctx.config.eval.ci
    seeds = [int(x) for x in (ctx.a.sufficiency_seeds or [ctx.cfg["seed"]])]
    base = functools.cache(lambda: load_model(spec, ctx.device, ctx.dtype))
    dirs = [_directions(ctx, spec, sd) for sd in seeds]  # every recording before the base loads to score
    reps = [_replicate(ctx, spec, sd, d, base) for sd, d in zip(seeds, dirs)]
    base.cache_clear()
    gc.collect()
    r0, plan = reps[0], reps[0]["plan"]
    pooled = {k: _mean([r[k] for r in reps]) for k in ("base_lo", "steered", "base_rate", "steered_rate")}
    cells = summarise_cells(plan, pooled["base_lo"], pooled["steered"], cols, pooled["base_rate"],
                            pooled["steered_rate"], r0["reference"], ci, seeds[0])  # fmt: skip
    if len(seeds) > 1:
        per_seed = [summarise_cells(plan, r["base_lo"], r["steered"], cols, ci=ci, seed=sd) for r, sd in zip(reps, seeds)]
        for c, o in zip(cells, over_seeds(per_seed, ci)):
            c["over_seeds"] = o
    base_rate = pooled["base_rate"]
    return {
        "direction": "teacher minus base, resid_post averaged over the answer tokens of held-out number rows",
        "model": spec, "teachers": r0["refs"]["teachers"], "targets": targets, "n_rows": len(r0["rows"][0]),
        "n_layers": int(r0["refs"]["own"].shape[1]), "layers": r0["layers"],
        "scales": [float(a) for a in ctx.a.sufficiency_scales], "seeds": seeds,
        "rate": bool(ctx.a.sufficiency_rate), "base_rate": None if base_rate is None else base_rate.round(6).tolist(),
        "scale_reference": r0["reference"], "n_scorings": len(seeds) * len(targets) * (len(plan) + 1), "cells": cells,
    }  # fmt: skip


# ---------------------------------------------------------------- report


def render_steer_sufficiency(doc: ReportDoc, run: str, ss: dict[str, Any]) -> None:
    """Per (direction, layer, alpha): gamma of the steered bases, its p, and the rate shift."""
    doc.heading("Steering the base along the teachers' directions (sufficiency)", 3)
    rows = [["direction", "layer", "alpha", "alpha |v| / |h|", "gamma [CI]", "p (perm.)", "own - random [CI], p",
             "rate shift [CI]"]]  # fmt: skip
    for c in ss.get("cells") or []:
        vs = c.get("vs_random")
        rows.append([c["source"], str(c["layer"]), fmt(c["alpha"]), fmt(c.get("scale_ratio")), fmt_est(c.get("gamma_ci")),
                     fmt(c.get("p_gamma")), f"{fmt_est(vs)}, {fmt(vs.get('p'))}" if vs else "",
                     fmt_est(c.get("rate_shift")) if c.get("rate_shift") else "not sampled"])  # fmt: skip
    doc.table(rows, [1.0, 0.75, 0.8, 1.0, 2.0, 0.9, 2.2, 1.9])
    doc.para(f"The base ({ss.get('model')}) with alpha times a direction added to one block's output at every "
             f"position, scored like the run's evaluation; one scoring per target. own: that target's "
             f"teacher's direction (teacher minus base, the raw mean difference over the answer tokens of "
             f"{ss.get('n_rows')} held-out number rows); random: a draw with the base's activation covariance, "
             "scaled to the same norm. alpha |v| / |h|: the added norm over the median over rows of the base's "
             "residual norm at that layer averaged over each row's answer tokens (a token-averaged vector, "
             "shorter than a single token's: the ratio overstates the push on one position). The raw "
             "direction keeps the part every target's teacher shares; gamma cancels it, the rate shift "
             "does not, and the random control matches the whole norm, of which the target-specific part "
             "is a fraction. gamma: own-target minus other-target log-odds shift of the steered bases against "
             "the unsteered base (nats), CI over targets; p: permutation over target labels; own - random: "
             "the own cell's per-target gamma minus the random cell's at the same layer and alpha, CI and "
             "one-sided paired t p over targets; rate shift: "
             "steered minus unsteered sampled rate of each target, mean and CI over targets. "
             f"{ss.get('n_scorings')} scorings of the base.")  # fmt: skip
    seeds = ss.get("seeds") or []
    if len(seeds) < 2 or not any(c.get("over_seeds") for c in ss.get("cells") or []):
        return
    rows = [["direction", "layer", "alpha", "gamma per seed", "gamma [CI over seeds]", "own - random [CI over seeds], p"]]
    for c in ss["cells"]:
        o = c.get("over_seeds") or {}
        vs = o.get("vs_random")
        rows.append([c["source"], str(c["layer"]), fmt(c["alpha"]), ", ".join(fmt(g) for g in o.get("gamma_per_seed") or []),
                     fmt_est(o.get("gamma_ci")), f"{fmt_est(vs)}, {fmt(vs.get('p'))}" if vs else ""])  # fmt: skip
    doc.table(rows, [1.0, 0.75, 0.8, 2.4, 2.0, 2.4])
    doc.para(f"Seeds {', '.join(str(x) for x in seeds)}: each a replicate of the whole measurement, with its own "
             "draw of the held-out number rows the directions are estimated on, its own random control and its "
             "own sampling seed. The table above averages the shifts over these seeds before taking gamma and "
             "its interval over targets; this one gives each seed's gamma and the intervals over seeds "
             "(own - random: paired by seed, one-sided t p).")  # fmt: skip


def _skip(ctx: AnalysisRun) -> str | None:
    return mm.opt_in_skip(ctx, "steer_sufficiency")


ANALYSIS = Analysis(
    name="steer_sufficiency", render=render_steer_sufficiency, report_when_absent=False,
    title="Steering sufficiency", compute=steer_sufficiency, skip=_skip,
    needs="every target's teacher and base recorded at answer positions; the base, steered and re-scored",
    extras=lambda ctx: tuple(backend_module(ctx.a.backend)), script="analyses/steer_sufficiency.py",
)  # fmt: skip
