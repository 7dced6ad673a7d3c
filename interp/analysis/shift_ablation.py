"""Is the teacher's trait direction necessary for transmission? Ablate it from the students' shift.

For a trait-matrix run (>= 2 targets, one teacher per target), per layer l the direction of
target t is v_l[t] = mean over held-out number rows of teacher_t - base (resid_post averaged over
each row's answer tokens, random answers no model wrote: `interp.mech.shift_matrix.directions`
on the recordings `matrix_mechanisms` makes, shared with it as cached stages; on the teacher's
base, the run's teachers; on another base, that base prompted with each target's system
prompt). Each student of a chosen arm (default: the trait arms on the teacher's base; or the
trait arms in `[analysis] arms`) is re-scored, the log-prob score over the run's candidates on
its eval questions (no sampling), with its activation shift ablated
(`interp.lm.steer.ablate_shift`: at block l, h_student -= ((h_student - h_base) . v_l) v_l, the
base run on the same batch; the base itself is never ablated), under:

- `own:all`: its own teacher's v_l at every layer at once;
- `own:L<l>`: the same at one layer l, for `shift_ablation_layers` layers spread over depth;
- `other:all`: control, the next target's teacher's direction (target i+1 mod k), every layer;
- `random:all`: control, at every layer a random direction drawn with the covariance of the
  base's activations on those rows (`interp.mech.ablation.covariance_directions`), one draw
  per (seed, target).

Gamma is recomputed from the ablated log-odds minus the base's (`interp.subliminal.matrix`; the
base's and the unablated students' scores are the run's own evaluations). Per condition: gamma,
its permutation p over target labels, and the fraction of gamma removed, 1 - gamma_ablated /
gamma, with the t-interval of that ratio over seeds (several seeds) or targets (one seed):
Fieller's, every ratio r whose paired t-test of (gamma_u - gamma_ablated_u) - r gamma_u = 0 is
not rejected, so the uncertainty of gamma itself counts and the interval is unbounded when
gamma is not clearly non-zero.

Cost: per arm, targets x seeds x (shift_ablation_layers + 3) scorings, each a log-prob score of
the student in which every student forward brings a base forward (about twice a plain score),
plus one student load per (target, seed) and the recordings of the base and each teacher on
`n_answer_rows` rows (shared with `matrix_mechanisms`). Each student's scores are a cached stage.
The quickstart's same-init arm: 6 targets x 1 seed x (4 + 3) = 42 scorings of 25 questions x 16
candidates on SmolLM2-135M.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from scipy import stats
from torch import Tensor

from interp.analysis import matrix_mechanisms as mm
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.extras import backend_module
from interp.fmt import fmt, fmt_ci, fmt_est
from interp.lm.models import Variant, load_model
from interp.lm.steer import ablate_shift
from interp.mech.ablation import covariance_directions
from interp.mech.shift_matrix import directions as teacher_directions
from interp.mech.shift_matrix import summarise_layers
from interp.registry import derived_seed
from interp.stats import cosine, t_interval
from interp.subliminal import matrix as mx
from interp.subliminal.evaluate import EvalConfig, logprob_score
from interp.subliminal.experiment import label
from interp.subliminal.traits import AnyTrait

log = logging.getLogger("interp")

SOURCES = ("own", "other", "random")


# ---------------------------------------------------------------- the plan (pure)


def spread_layers(n_layers: int, n: int) -> list[int]:
    """`n` layers spread evenly over depth (the middle of each of n equal slices), deduplicated."""
    if n_layers < 1:
        raise ValueError(f"need >= 1 layer, got {n_layers}")
    return sorted({min(n_layers - 1, max(0, round((i + 0.5) * n_layers / n - 0.5))) for i in range(n)})


def plan_conditions(n_layers: int, n_single: int) -> dict[str, tuple[str, list[int]]]:
    """{condition: (direction source, layers)}: own at all layers, own at each spread layer, the
    other-target and random controls at all layers."""
    every = list(range(n_layers))
    out = {"own:all": ("own", every)}
    out |= {f"own:L{layer}": ("own", [layer]) for layer in (spread_layers(n_layers, n_single) if n_single else [])}
    return out | {"other:all": ("other", every), "random:all": ("random", every)}


def condition_directions(
    source: str, i: int, own: Float[Tensor, "target layer d_model"], random: Float[Tensor, "target layer d_model"]
) -> Float[Tensor, "layer d_model"]:
    """The per-layer directions ablated from target i's student: its teacher's (own), the next
    target's teacher's (other), or its random draw."""
    if source == "own":
        return own[i]
    if source == "other":
        return own[(i + 1) % own.shape[0]]
    if source == "random":
        return random[i]
    raise ValueError(f"unknown direction source {source!r} (known: {', '.join(SOURCES)})")


# ---------------------------------------------------------------- the statistics (pure)


def ratio_interval(removed: np.ndarray, gamma: np.ndarray, ci: float = 0.95) -> dict[str, Any]:
    """mean(removed) / mean(gamma) over paired units, with Fieller's t-interval.

    The interval holds every r for which the t-test of mean(removed_u - r gamma_u) = 0 is not
    rejected at 1 - ci: (x - r y)^2 <= q (s_xx - 2 r s_xy + r^2 s_yy), q = t^2 / n. Bounded
    only when mean(gamma) is itself clearly away from 0 (y^2 > q s_yy); otherwise lo and hi are
    None and `bounded` is False.
    """
    x, y = np.asarray(removed, dtype=float), np.asarray(gamma, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"need paired 1-d values over >= 2 units, got {x.shape} and {y.shape}")
    n = x.size
    xm, ym = float(x.mean()), float(y.mean())
    cov = np.cov(np.stack([x, y]), ddof=1)
    q = float(stats.t.ppf(0.5 + ci / 2, n - 1)) ** 2 / n
    a = ym**2 - q * float(cov[1, 1])
    b = xm * ym - q * float(cov[0, 1])
    c = xm**2 - q * float(cov[0, 0])
    mean = xm / ym if ym != 0 else float("nan")
    out: dict[str, Any] = {"mean": mean, "lo": None, "hi": None, "n": n, "method": "fieller-t", "bounded": False}
    if a > 0:
        root = float(np.sqrt(max(b**2 - a * c, 0.0)))
        out |= {"lo": (b - root) / a, "hi": (b + root) / a, "bounded": True}
    return out


def condition_summary(
    plain: Float[np.ndarray, "seed target candidate"],
    ablated: Float[np.ndarray, "seed target candidate"],
    cols: list[int], ci: float = 0.95, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Gamma of ablated shifts (vs the base), its permutation p, and the fraction of the plain
    gamma removed with its interval over seeds (>= 2 seeds) or else over targets."""
    plain, ablated = np.asarray(plain, dtype=float), np.asarray(ablated, dtype=float)
    if plain.shape != ablated.shape or plain.ndim != 3:
        raise ValueError(f"plain and ablated shifts must be [seed, target, candidate], got {plain.shape}, {ablated.shape}")
    k = plain.shape[1]
    mean = ablated.mean(0)
    stat, p, n_perm = mx.label_permutation_p(lambda order: mx.gamma(mean[order], cols), k, seed=seed)
    per_seed = np.array([mx.gamma(a, cols) for a in ablated])
    per_target = mx.per_target_gamma(mean, cols)
    if plain.shape[0] >= 2:
        over, g, a = "seeds", np.array([mx.gamma(s, cols) for s in plain]), per_seed
    else:
        over, g, a = "targets", mx.per_target_gamma(plain.mean(0), cols), per_target
    return {
        "gamma": stat, "p_gamma": p, "n_permutations": n_perm,
        "gamma_ci": t_interval(a, ci).to_dict() | {"over": over},
        "removed": t_interval(g - a, ci).to_dict() | {"over": over},
        "fraction_removed": ratio_interval(g - a, g, ci) | {"over": over},
        "gamma_per_seed": per_seed.round(6).tolist(), "gamma_per_target": per_target.round(6).tolist(),
    }  # fmt: skip


# ---------------------------------------------------------------- scoring (a model in, log-odds out)


def ablated_log_odds(
    student: Any, base: Any, tok: Any, trait: AnyTrait, settings: EvalConfig,
    conditions: dict[str, dict[int, Tensor]], seed: int = 0,
) -> dict[str, list[float]]:  # fmt: skip
    """{condition: log-odds of every candidate}: the student's log-prob score with its shift from
    `base` ablated along that condition's {layer: direction} (`ablate_shift`)."""
    out = {}
    for name, dirs in conditions.items():
        with ablate_shift(student, base, dirs):
            out[name] = logprob_score(student, tok, trait, settings, seed=seed)["log_odds"]
    return out


# ---------------------------------------------------------------- the run


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def _arms(ctx: AnalysisRun) -> list[str]:
    """The trait arms read: those in [analysis] arms, else every trait arm on the teacher's base."""
    trait_arms = [n for n, s in ctx.students.items() if s.get("data", "trait") == "trait"]
    if ctx.a.arms:
        return [n for n in trait_arms if n in ctx.a.arms]
    return [n for n in trait_arms if ctx.spec_of(n) == ctx.teacher_spec]


def _refs(ctx: AnalysisRun, spec: str, rows) -> dict[str, Any]:
    """Each target's direction on `spec` [target, layer, d] and the base's recorded rows."""
    targets = ctx.summary["trait"]["targets"]
    teachers, _, what = mm._teachers(ctx, spec)
    base = mm.record_answers(ctx, f"base-{spec}", Variant(spec), rows)  # the stages matrix_mechanisms reads
    prompted = torch.stack([mm.record_answers(ctx, f"teacher-{spec}-{t}", v, rows) for t, v in zip(targets, teachers)])
    return {"own": teacher_directions(prompted, base).float(), "base": base, "teachers": what}


def _seeds(ctx: AnalysisRun, name: str) -> list[str]:
    return sorted(ctx.art["students_by_target"][name][ctx.summary["trait"]["targets"][0]], key=int)


def _random(ctx: AnalysisRun, refs: dict[str, Any], seed: str) -> Float[Tensor, "target layer d_model"]:
    """One covariance-drawn direction per target and layer for the students of `seed`."""
    return covariance_directions(refs["base"], derived_seed(ctx.cfg["seed"], "shift-ablation", int(seed)),
                                 n_draws=len(ctx.summary["trait"]["targets"]))  # fmt: skip


def _score_arm(ctx: AnalysisRun, name: str, spec: str, refs: dict[str, Any], plan: dict) -> np.ndarray:
    """[condition, seed, target, candidate]: log-odds of each student of `name` under each condition."""
    targets = ctx.summary["trait"]["targets"]
    by_t = ctx.art["students_by_target"][name]
    seeds = _seeds(ctx, name)
    settings: EvalConfig = ctx.config.eval
    base_model, tok = load_model(spec, ctx.device, ctx.dtype)
    out = np.zeros((len(plan), len(seeds), len(targets), len(ctx.summary["matrix"]["candidates"])))
    for s, sd in enumerate(seeds):
        random = _random(ctx, refs, sd)
        for i, t in enumerate(targets):
            variant = Variant(spec, delta_path=ctx.path(by_t[t][sd]) / "delta.safetensors")
            conds = {c: {layer: condition_directions(src, i, refs["own"], random)[layer] for layer in layers}
                     for c, (src, layers) in plan.items()}  # fmt: skip
            params = {"student": variant.identity(), "base": Variant(spec).identity(), "eval": settings.key(),
                      "candidates": ctx.summary["matrix"]["candidates"], "seed": ctx.cfg["seed"],
                      "conditions": {c: {str(k): _digest(v) for k, v in d.items()} for c, d in conds.items()}}  # fmt: skip

            def make(variant=variant, conds=conds, t=t) -> dict[str, Any]:
                log.info("shift ablation: %s, target %s, %d conditions", variant.delta_path.parent.name, t, len(conds))
                student, _ = variant.load(ctx.device, ctx.dtype)
                scores = ablated_log_odds(student, base_model, tok, ctx.trait_for(t), settings, conds, ctx.cfg["seed"])
                del student
                gc.collect()
                return {"log_odds": scores}

            res = ctx.run.compute_json(f"analysis/shift-ablation/{name}-{t}-seed{sd}", params, make, filename="scores.json")
            out[:, s, i] = [res["log_odds"][c] for c in plan]
    return out


def _plain(ctx: AnalysisRun, name: str, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """The run's own log-odds: [seed, target, candidate] of the students, [candidate] of their base."""
    targets, models = ctx.summary["trait"]["targets"], ctx.summary["models"]
    seeds = _seeds(ctx, name)
    lo = np.array([[models[label(name, t, targets[0], int(sd))]["log_odds"] for t in targets] for sd in seeds])
    base = models["base" if spec == ctx.teacher_spec else f"base:{spec}"]["log_odds"]
    return lo, np.asarray(base, dtype=float)


def _direction_cosines(own: Tensor, random: Tensor) -> dict[str, list[float | None]]:
    """Per layer, mean over targets: cos(own, other-target) and cos(own, the first seed's random draw)."""
    other = torch.roll(own, -1, dims=0)
    return {"own_vs_other": summarise_layers(cosine(own, other).mean(0).numpy()),
            "own_vs_random": summarise_layers(cosine(own, random).mean(0).numpy())}  # fmt: skip


def shift_ablation(ctx: AnalysisRun) -> dict[str, Any] | None:
    """Per arm: gamma with the students' shifts ablated along each condition's directions."""
    rows = mm.answer_rows(ctx.a.n_answer_rows, ctx.cfg["seed"])
    targets = ctx.summary["trait"]["targets"]
    cands = ctx.summary["matrix"]["candidates"]
    cols = [cands.index(t) for t in targets]
    ci, arms, plan = ctx.config.eval.ci, {}, {}
    for name in _arms(ctx):
        spec = ctx.spec_of(name)
        refs = _refs(ctx, spec, rows)
        plan = plan_conditions(refs["own"].shape[1], ctx.a.shift_ablation_layers)
        scores = _score_arm(ctx, name, spec, refs, plan)
        plain, base = _plain(ctx, name, spec)
        unablated = condition_summary(plain - base, plain - base, cols, ci, ctx.cfg["seed"])
        arms[name] = {
            "model": spec, "teachers": refs["teachers"], "n_seeds": int(plain.shape[0]),
            "gamma": unablated["gamma"], "p_gamma": unablated["p_gamma"], "gamma_ci": unablated["gamma_ci"],
            "conditions": {c: {"source": src, "layers": "all" if c.endswith(":all") else layers,
                               **condition_summary(plain - base, scores[j] - base, cols, ci, ctx.cfg["seed"])}
                           for j, (c, (src, layers)) in enumerate(plan.items())},
            "direction_cosines": _direction_cosines(refs["own"], _random(ctx, refs, _seeds(ctx, name)[0])),
        }  # fmt: skip
        gc.collect()
    if not arms:
        return None
    n_scorings = sum(len(a["conditions"]) * a["n_seeds"] * len(targets) for a in arms.values())
    return {
        "direction": "teacher minus base, resid_post averaged over the answer tokens of held-out number rows",
        "n_rows": len(rows[0]), "targets": targets, "n_layers": len(plan["own:all"][1]),
        "single_layers": [ls[0] for c, (_, ls) in plan.items() if c.startswith("own:L")],
        "n_scorings": n_scorings, "arms": arms,
    }  # fmt: skip


# ---------------------------------------------------------------- report


def _fraction(f: dict[str, Any] | None) -> str:
    if not f or f.get("mean") is None:
        return "n/a"
    interval = fmt_ci(f["lo"], f["hi"]) if f.get("bounded") else "[unbounded]"
    return f"{fmt(f['mean'])} {interval}"


def render_shift_ablation(doc: ReportDoc, run: str, sa: dict[str, Any]) -> None:
    """Per arm and condition: gamma after the ablation, its p, and the fraction of gamma removed."""
    doc.heading("Shift ablation along the teachers' directions", 3)
    rows = [["student", "ablated along", "layers", "gamma [CI]", "p (perm.)", "fraction removed [CI]"]]
    for name, a in (sa.get("arms") or {}).items():
        rows.append([name, "nothing", "", fmt_est(a.get("gamma_ci")), fmt(a.get("p_gamma")), ""])
        for c in (a.get("conditions") or {}).values():
            layers = c["layers"] if c["layers"] == "all" else ", ".join(str(x) for x in c["layers"])
            rows.append([name, c["source"], layers, fmt_est(c.get("gamma_ci")), fmt(c.get("p_gamma")),
                         _fraction(c.get("fraction_removed"))])  # fmt: skip
    doc.table(rows, [1.5, 1.3, 0.9, 2.1, 1.1, 2.1])
    doc.para(f"Each student re-scored (log-prob score, the run's questions and candidates) with its "
             f"activation shift (student minus base on the same input) removed along a direction per "
             f"layer, at every layer ({sa.get('n_layers')}) or at one; the base is never ablated. own: "
             f"its teacher's direction (teacher minus base, answer tokens of {sa.get('n_rows')} held-out "
             "number rows); other: the next target's teacher's; random: drawn with the base's activation "
             "covariance. gamma: own-target minus other-target log-odds shift (nats), CI over seeds (or "
             "targets with one seed); p: permutation over target labels; fraction removed: 1 - gamma "
             "ablated / gamma, Fieller t-interval over the same units (unbounded when gamma is not "
             f"clearly non-zero). {sa.get('n_scorings')} ablated scorings.")  # fmt: skip


def _skip(ctx: AnalysisRun) -> str | None:
    why = mm.opt_in_skip(ctx, "shift_ablation")
    if why or _arms(ctx):
        return why
    return "no trait arm to ablate (on the teacher's base, or in [analysis] arms)"


ANALYSIS = Analysis(
    name="shift_ablation", render=render_shift_ablation, report_when_absent=False,
    title="Shift ablation", compute=shift_ablation, skip=_skip,
    needs="every target's teacher and base recorded at answer positions; the trait arms' students, re-scored",
    extras=lambda ctx: tuple(backend_module(ctx.a.backend)), script="analyses/shift_ablation.py",
)  # fmt: skip
