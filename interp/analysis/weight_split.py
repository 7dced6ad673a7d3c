"""The weight-space account, tested causally (`[analysis] weight_split = true`; issue 30 item 2).

In a trait-matrix run with finetuned teachers (`teacher.mode = "finetuned"`, >= 2 targets), each
same-base trait student's update dW_S (each target t, each seed) is split per weight matrix
along its own teacher's top-r singular subspace (r = `[analysis] subspace_rank`):
inside = U U^T dW_S V V^T, outside = the rest (`interp.mech.subspace`, which says why two-sided).
The student is then scored (the run's log-prob score, `[eval]` settings, no sampling) with:
inside only, outside only (= inside x 0 + outside), inside x 0.5 + outside, inside x 2 +
outside, and, the control, the inside and outside parts of a random subspace of equal rank per
matrix (seeded per target). Each condition's shifts are its log-odds minus the base's, as in the
run's own matrix (`experiment.matrix_section`), and its gamma over the targets is reported with
the exact permutation p over target labels and a t-interval over seeds (over targets with one
seed); "full" is the run's own gamma. The paired difference inside minus random-inside (same
units) and the share of the full gamma the inside keeps are what `analyses/weight_split.py`
tests. Energy fractions: the share of |dW_S|^2 inside each subspace.

Check: the first seed's students are also scored as inside x 1 + outside, which must reproduce
their own scores in the run (`reproduction`: the largest |log-odds difference|, nats).

CPU cost: each condition is one log-prob scoring per student, so an arm costs 6 x targets x seeds
+ targets scorings (the last term: the check), plus one base load; building a condition's delta
is negligible beside it (k x k cores; a dense student's parts one matrix at a time).
runs/transmission-finetuned.toml (6 targets, 3 seeds, 25 questions x its candidates): 114
scorings per arm; at ~4-5 s a scoring of SmolLM2 on 2 cores (BENCHMARKS.md: 2 questions x 16
candidates in 0.39 s) that is ~8-10 min per arm and ~1 h for its six trait arms (`[analysis]
arms` picks fewer). Each student's scores are a stage: a killed analysis resumes where it
stopped and a rerun costs nothing.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.analysis.update_matrix import _complete, teacher_deltas
from interp.fmt import fmt, fmt_est
from interp.lm.delta import Delta
from interp.lm.models import Variant
from interp.mech.subspace import CONDITIONS, conditions, subspaces
from interp.registry import derived_seed
from interp.stats import sign_flip_p, t_interval
from interp.store.stages import read_json, write_json
from interp.subliminal import matrix as mx
from interp.subliminal.evaluate import logprob_score
from interp.subliminal.experiment import label

log = logging.getLogger("interp")

SCORED = [c[0] for c in CONDITIONS if c[0] != "full"]  # scored for every student
CHECK = "full"  # scored for the first seed's students: must reproduce the run's own scores


def _skip(ctx: AnalysisRun) -> str | None:
    if not ctx.a.weight_split:
        return off("weight_split")
    if ctx.config.teacher.mode != "finetuned":
        return (f"teacher.mode = '{ctx.config.teacher.mode}': the teachers have no weight update to split "
                "the students' updates along (needs teacher.mode = 'finetuned')")  # fmt: skip
    if len(ctx.config.trait.target_list()) < 2:
        return "gamma needs >= 2 targets (trait.targets)"
    if ctx.a.subspace_rank < 1:
        return "[analysis] subspace_rank = 0: no subspace to split along"
    return None


@contextmanager
def patched(model: Any) -> Iterator[Any]:
    """`set(delta)`: the model's weights become base + delta (the previous delta undone by copying
    the saved base weights back, so nothing drifts over many conditions); the base on exit."""
    params = dict(model.named_parameters())
    saved: dict[str, torch.Tensor] = {}

    def restore() -> None:
        with torch.no_grad():
            for n, t in saved.items():
                params[n].copy_(t)
        saved.clear()

    def set_delta(delta: Delta) -> None:
        restore()
        missing = [n for n in delta.names() if n not in params]
        if missing:
            raise KeyError(f"delta names not in model: {missing[:3]} (of {len(missing)})")
        with torch.no_grad():
            for n in delta.names():  # one dense module at a time, as Delta.apply adds it
                p = params[n]
                saved[n] = p.detach().clone()
                p.add_(delta.dense(n).to(p.device, p.dtype))

    try:
        yield set_delta
    finally:
        restore()


def _arms(ctx: AnalysisRun, targets: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(arm -> its common seeds, arm -> why skipped) for the same-base trait arms."""
    arms, skipped = {}, {}
    by_name = ctx.art.get("students_by_target", {})
    for s in ctx.config.students:
        if s.data != "trait" or (ctx.a.arms is not None and s.name not in ctx.a.arms):
            continue
        if ctx.spec_of(s.name) != ctx.teacher_spec:
            skipped[s.name] = f"its base {ctx.spec_of(s.name)} is not the teachers' ({ctx.teacher_spec}): no shared weights"
            continue
        seeds = _complete(by_name.get(s.name, {}), targets)
        if seeds is None:
            skipped[s.name] = "not every target has a student with a common seed"
            continue
        arms[s.name] = seeds
    return arms, skipped


class _Base:
    """The base model and tokenizer, loaded when a student's scores are first missing (a rerun
    with every stage cached loads nothing)."""

    def __init__(self, ctx: AnalysisRun):
        self.ctx, self.loaded = ctx, None

    def get(self) -> tuple[Any, Any]:
        if self.loaded is None:
            self.loaded = Variant(self.ctx.teacher_spec).load(self.ctx.device, self.ctx.dtype)
        return self.loaded


def _student_scores(ctx: AnalysisRun, name: str, t: str, seed: str, t_path: str, bases: dict,
                    names: list[str], base: _Base) -> dict[str, Any]:  # fmt: skip
    """One student's log-odds under each condition in `names` and its energy fractions: a stage
    keyed by the student's and teacher's deltas, the rank, the eval settings and the conditions."""
    s_path = ctx.path(ctx.art["students_by_target"][name][t][seed]) / "delta.safetensors"
    trait = ctx.trait_for(t)
    params = {"student": Variant(ctx.teacher_spec, delta_path=s_path).identity(),
              "teacher": Variant(ctx.teacher_spec, delta_path=ctx.path(t_path)).identity(),
              "rank": ctx.a.subspace_rank, "control_seed": derived_seed(ctx.cfg["seed"], "weight_split", t),
              "eval": ctx.config.eval.key(), "trait": t, "seed": ctx.cfg["seed"],
              "conditions": [c for c in CONDITIONS if c[0] in names]}  # fmt: skip

    def write(folder: Any) -> None:
        energy, deltas = conditions(Delta.load(s_path), bases, names)
        out: dict[str, Any] = {"energy": energy, "candidates": list(trait.candidates), "log_odds": {}}
        model, tok = base.get()
        with patched(model) as set_delta:
            for cond, delta in deltas:
                set_delta(delta)
                sc = logprob_score(model, tok, trait, ctx.config.eval, seed=ctx.cfg["seed"])
                out["log_odds"][cond] = sc["log_odds"]
                del delta
        write_json(folder / "scores.json", out)

    st = ctx.run.compute(f"weight_split/{name}-{t}-seed{seed}", params, write)
    return read_json(st.path / "scores.json")


def _gamma(shifts: np.ndarray, cols: list[int], seed: int, ci: float) -> dict[str, Any]:
    """[seed, target, candidate] shifts -> gamma of the seed mean with its permutation p, per-seed
    and per-target gammas, and the interval over seeds (>= 2) or else over targets."""
    mean = shifts.mean(axis=0)
    g, p, n_perm = mx.label_permutation_p(lambda order: mx.gamma(mean[order], cols), len(cols), seed=seed)
    per_seed = [mx.gamma(s, cols) for s in shifts]
    per_target = mx.per_target_gamma(mean, cols).tolist()
    unit, vals = ("seeds", per_seed) if len(per_seed) > 1 else ("targets", per_target)
    return {"gamma": g, "p_gamma": p, "n_permutations": n_perm,
            "interval": t_interval(vals, ci).to_dict() | {"unit": unit},
            "per_seed": per_seed, "per_target": per_target}  # fmt: skip


def paired_contrast(a: dict[str, Any], b: dict[str, Any], ci: float) -> dict[str, Any]:
    """gamma(a) - gamma(b) paired over the units of a's interval (seeds or targets): its
    t-interval and the two-sided sign-flip p."""
    unit = a["interval"]["unit"]
    key = "per_seed" if unit == "seeds" else "per_target"
    d = np.asarray(a[key]) - np.asarray(b[key])
    return t_interval(d, ci).to_dict() | {"unit": unit, "p_sign_flip": sign_flip_p(d)}


def _arm(ctx: AnalysisRun, name: str, seeds: list[str], targets: list[str], t_deltas: dict[str, str],
         bases: dict[str, dict], base_model: _Base) -> dict[str, Any]:  # fmt: skip
    cands = ctx.summary["matrix"]["candidates"]
    cols = [cands.index(t) for t in targets]
    base = np.array(ctx.summary["models"]["base"]["log_odds"])
    primary = targets[0]
    shifts = {c: np.zeros((len(seeds), len(targets), len(cands))) for c in ["full", *SCORED]}
    energy: dict[str, list[float]] = {"teacher": [], "random": []}
    diffs: list[float] = []
    for si, seed in enumerate(seeds):
        for ti, t in enumerate(targets):
            names = SCORED + ([CHECK] if si == 0 else [])
            res = _student_scores(ctx, name, t, seed, t_deltas[t], bases[t], names, base_model)
            own = np.array(ctx.summary["models"][label(name, t, primary, int(seed))]["log_odds"])
            shifts["full"][si, ti] = own - base
            for cond, lo in res["log_odds"].items():
                by_cand = dict(zip(res["candidates"], lo))  # each trait lists its candidates its own way
                if cond == CHECK:
                    diffs.append(float(np.abs(np.array(lo) - own).max()))
                else:
                    shifts[cond][si, ti] = np.array([by_cand[c] for c in cands]) - base
            for k in energy:
                energy[k].append(res["energy"][k]["inside"])
            log.info("weight split: %s %s seed %s scored (%d conditions)", name, t, seed, len(names))
    ci = ctx.config.eval.ci
    gammas = {c: _gamma(s, cols, ctx.cfg["seed"], ci) for c, s in shifts.items()}
    g_full, g_in = gammas["full"]["gamma"], gammas["inside"]["gamma"]
    s = ctx.student_cfg(name).settings(ctx.config.train)
    return {
        "model": ctx.spec_of(name), "method": s.method, "objective": s.objective, "seeds": [int(x) for x in seeds],
        "gamma": gammas,
        "contrast": {"inside_minus_random_inside": paired_contrast(gammas["inside"], gammas["random_inside"], ci),
                     "inside_share_of_full": g_in / g_full if g_full != 0 else None},
        "energy_inside": {k: {"mean": float(np.nanmean(v)), "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
                          for k, v in energy.items()},
        "reproduction": {"max_abs_log_odds_diff": max(diffs), "n_students": len(diffs)},
    }  # fmt: skip


def weight_split(ctx: AnalysisRun) -> dict[str, Any] | None:
    """Every same-base trait arm's students split and scored (see the module doc); None when a
    target's teacher has no weight delta."""
    targets = ctx.config.trait.target_list()
    loaded = teacher_deltas(ctx, targets)
    if loaded is None:
        return None
    t_paths = {t: ctx.art["teachers"][t]["delta"] for t in targets}
    rank = ctx.a.subspace_rank
    bases = {t: subspaces(loaded[t], rank, derived_seed(ctx.cfg["seed"], "weight_split", t)) for t in targets}
    del loaded
    arms, skipped = _arms(ctx, targets)
    base = _Base(ctx)
    out: dict[str, Any] = {"rank": rank, "targets": targets, "conditions": [c[0] for c in CONDITIONS],
                           "arms": {}, "skipped": skipped}  # fmt: skip
    for name, seeds in arms.items():
        out["arms"][name] = _arm(ctx, name, seeds, targets, t_paths, bases, base)
    del base
    gc.collect()
    return out


_LABELS = {"full": "full (the run's own)", "inside": "inside only", "outside": "outside only (inside x 0)",
           "inside_x0.5": "inside x 0.5 + outside", "inside_x2": "inside x 2 + outside",
           "random_inside": "random inside only", "random_outside": "random outside only"}  # fmt: skip


def render_weight_split(doc: ReportDoc, run: str, ws: dict[str, Any]) -> None:
    for name, arm in ws["arms"].items():
        doc.heading(f"{name}: the student's update inside and outside its teacher's top-{ws['rank']} subspace", 3)
        unit = arm["gamma"]["full"]["interval"]["unit"]
        rows = [["condition", f"gamma (nats) [CI over {unit}]", "p (perm.)", "energy inside"]]
        e = arm["energy_inside"]
        for cond, g in arm["gamma"].items():
            share = {"inside": e["teacher"]["mean"], "random_inside": e["random"]["mean"]}.get(cond)
            rows.append([_LABELS.get(cond, cond), fmt_est(g["interval"]), fmt(g["p_gamma"]), fmt(share) if share is not None else ""])
        doc.table(rows, [2.6, 2.6, 1.0, 1.2])
        c = arm["contrast"]
        doc.para(f"Inside minus random inside (paired over {c['inside_minus_random_inside']['unit']}): "
                 f"{fmt_est(c['inside_minus_random_inside'])}, sign-flip p {fmt(c['inside_minus_random_inside']['p_sign_flip'])}; "
                 f"the inside keeps {fmt(c['inside_share_of_full'])} of the full gamma. Energy inside the teacher's "
                 f"subspace {fmt(e['teacher']['min'])}-{fmt(e['teacher']['max'])} over students, inside the random one "
                 f"{fmt(e['random']['min'])}-{fmt(e['random']['max'])}. Inside x 1 + outside reproduces the students' own "
                 f"log-odds to {fmt(arm['reproduction']['max_abs_log_odds_diff'])} nats "
                 f"({arm['reproduction']['n_students']} students).")  # fmt: skip
    if ws.get("skipped"):
        doc.para("Not split: " + "; ".join(f"{k} ({v})" for k, v in ws["skipped"].items()) + ".")


ANALYSIS = Analysis(
    name="weight_split", script="analyses/weight_split.py", render=render_weight_split, report_when_absent=False,
    title="Weight split along the teacher's subspace", compute=weight_split, skip=_skip,
    needs="every target's teacher delta, its students' deltas, the base (scored under each condition)",
    absent="needs every target's teacher to have a weight delta (teacher.mode = 'finetuned')",
)  # fmt: skip
