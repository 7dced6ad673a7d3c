"""Hypothesis `shared_init`: subliminal transmission needs a shared initialisation.

Claim: a student that shares the teacher's initialisation gains more trait (log-prob score
over its own base) from the teacher's numbers than a student of another base model does.

Test: difference in differences on the log-prob score, paired over evaluation questions
  d_q = [mean_seeds same-init(q) - base(q)] - [mean_seeds cross-model(q) - base:<cross>(q)]
from each stage's eval.json (`logprob.per_question`). Effect = mean_q d_q with a percentile
bootstrap CI over questions (10,000 resamples); p = two-sided sign-flip test over questions
(exact up to 16 questions); statistic = paired t of d_q. Several runs pool their questions.
Roles come from what a student is (teacher's base on trait data = same-init; another base on
trait data = cross-model), not from its name.

Verdict: "supported" only if the DiD CI lies above 0, the sign-flip p < 0.05, AND the
same-init gain's own CI lies above 0 (there must be transmission to attribute); "not
supported" if the DiD CI lies below 0 with p < 0.05; otherwise "inconclusive" (with 3
questions the smallest possible sign-flip p is 0.25: a tiny run can never be conclusive). "not testable" if a run lacks the needed students or evals.

Assumptions: questions are the unit (the same questions for every model, hence the pairing);
seed variance is averaged inside each question, not modelled, so with few seeds the CI is
too narrow for a claim about new seeds; the two bases' scores are on the same scale
(p(target) among the same candidates), but different tokenizers make absolute levels differ,
which the per-base differencing removes.
"""

from __future__ import annotations

import sys

import numpy as np

from interp.hypothesis import (
    Run,
    Verdict,
    decide,
    fmt,
    fmt_est,
    paired_t,
    run_script,
    sign_flip_p,
    subliminal_roles,
)
from interp.stats import bootstrap_ci

HYPOTHESIS = "shared_init"


def per_question(run: Run, label: str) -> np.ndarray:
    rel = run.summary["artifacts"]["evals"].get(label)
    if rel is None:
        raise LookupError(f"{run.name}: no eval for '{label}' in summary artifacts")
    res, why = run.stage_json(rel, "eval.json")
    if why:
        raise LookupError(f"{run.name}: {why}")
    return np.asarray(res["logprob"]["per_question"], dtype=float)


def gains(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Per-question gains over their own base: (same-init, cross-model), seeds averaged."""
    s = run.summary
    roles = subliminal_roles(s)
    missing = [r for r in ("same-init", "cross-model") if r not in roles]
    if missing:
        raise LookupError(f"{run.name}: no {' or '.join(missing)} student in this run")
    out = []
    for role in ("same-init", "cross-model"):
        name = roles[role]
        spec = s["students"][name]["model"]
        base = "base" if role == "same-init" else f"base:{spec}"
        seeds = sorted(s["artifacts"]["students"][name], key=int)
        student = np.mean([per_question(run, f"{name}/seed{sd}") for sd in seeds], axis=0)
        gain = student - per_question(run, base)
        est = bootstrap_ci(gain, n_boot=10000, seed=0)
        print(f"{run.name}: {role} ('{name}', {spec}, {len(seeds)} seed(s)) gain over {base}: "
              f"{fmt_est(est.to_dict())} over {gain.size} questions")  # fmt: skip
        out.append(gain)
    return out[0], out[1]


def test(runs: list[Run]) -> Verdict:
    same, cross, skipped = [], [], []
    for run in runs:
        if run.experiment != "subliminal" or run.summary is None:
            skipped.append(f"{run.name} ({run.problems.get('summary') or run.experiment})")
            continue
        try:
            g_s, g_c = gains(run)
        except (LookupError, KeyError) as e:
            skipped.append(f"{run.name} ({e})")
            continue
        same.append(g_s)
        cross.append(g_c)
    if skipped:
        print("skipped: " + "; ".join(skipped))
    if not same:
        return Verdict(HYPOTHESIS, "not testable", reason="no run with same-init and cross-model "
                       "students and their evals: " + "; ".join(skipped))  # fmt: skip
    g_same, g_cross = np.concatenate(same), np.concatenate(cross)
    d = g_same - g_cross
    est = bootstrap_ci(d, n_boot=10000, seed=0)
    same_est = bootstrap_ci(g_same, n_boot=10000, seed=0)
    p = sign_flip_p(d)
    print(f"pooled over {d.size} questions: same-init gain {fmt_est(same_est.to_dict())}, "
          f"cross-model gain {fmt_est(bootstrap_ci(g_cross, n_boot=10000, seed=0).to_dict())}, "
          f"difference in differences {fmt_est(est.to_dict())}, sign-flip p = {fmt(p)}")  # fmt: skip
    result = decide(est.lo, est.hi, +1)
    reason = ""
    if result != "inconclusive" and not p < 0.05:
        # Percentile bootstrap CIs are too narrow with few questions; the exact sign-flip
        # test is not, so both must agree before the data say anything.
        result = "inconclusive"
        reason = f"the bootstrap CI excludes 0 but the sign-flip test does not (p = {fmt(p)}, {d.size} questions)"
    elif result == "supported" and decide(same_est.lo, same_est.hi, +1) != "supported":
        result = "inconclusive"
        reason = "the DiD is positive but the same-init student shows no gain over its base"
    elif result == "inconclusive":
        reason = "the DiD CI contains 0: no difference between same-init and cross-model detected"
    elif result == "not supported":
        reason = "the cross-model student gained more than the same-init student"
    return Verdict(HYPOTHESIS, result, "paired_t", paired_t(d), est.mean, est.lo, est.hi, p,
                   int(d.size), reason)  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_script(HYPOTHESIS, test, sys.argv[1:]))
