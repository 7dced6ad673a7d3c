"""Hypothesis `transmission`: same-init students acquire *their own* teacher's trait.

Claim: in a trait x student matrix (one prompted teacher per target, students trained on each
teacher's number data), a student's log-odds shift toward its own teacher's target exceeds its
shift toward the other teachers' targets: gamma = mean own - mean other > 0 (nats).

Test: the run's summary holds, per student entry ("arm"), the shift matrix (mean over seeds),
gamma with a one-sided permutation test over target labels (the unit is the target: the
seeds of one target share a dataset; exact over all k! relabellings, so the smallest p is 1/k!)
and a t-interval of gamma over seeds. The arm tested is `--arm NAME` (default: every arm on the
teacher's base that learns from trait data with soft labels, the first of them).

Verdict: "supported" if p < 0.01 and the seed interval lies above 0; "not supported" if the
seed interval lies below 0; "inconclusive" otherwise (one seed gives no interval: it can only be
inconclusive). "not testable" for a run with fewer than two targets or without such an arm.

Assumptions: targets are exchangeable under the null (the same prompt template, animals from
one category); generic drift shared by all students cancels in gamma; the candidate set is the
same for every student (the run's common candidate list).
"""

from __future__ import annotations

import math
import sys

from interp.hypothesis import Run, Verdict, decide, pop_option, run_script

HYPOTHESIS = "transmission"


def pick_arm(run: Run, name: str | None) -> tuple[str, dict]:
    m = run.summary.get("matrix")
    if not m or not m.get("arms"):
        raise LookupError(f"{run.name}: no trait matrix in summary.json (needs trait.targets)")
    arms = m["arms"]
    if name is not None:
        if name not in arms:
            raise LookupError(f"{run.name}: no arm '{name}' (arms: {', '.join(arms)})")
        return name, arms[name]
    teacher_base = run.summary["models"]["base"]["model"]
    for n, a in arms.items():
        if a["model"] == teacher_base and a["objective"] == "distill":
            return n, a
    raise LookupError(f"{run.name}: no same-init soft-label arm; pass --arm")


def test(runs: list[Run], arm_name: str | None = None) -> Verdict:
    if len(runs) != 1:
        raise LookupError("give exactly one run directory")
    name, arm = pick_arm(runs[0], arm_name)
    if arm.get("gamma") is None:
        raise LookupError(arm.get("why_no_gamma", "no gamma"))
    ci = arm["gamma_ci"]
    result = decide(ci["lo"], ci["hi"]) if ci["n"] > 1 else "inconclusive"
    if result == "supported" and not arm["p_gamma"] < 0.01:
        result = "inconclusive"
    reason = f"arm {name}: {arm['n_targets']} targets, {ci['n']} seeds, {arm['n_permutations']} permutations"
    lo, hi = (ci["lo"], ci["hi"]) if ci["n"] > 1 else (math.nan, math.nan)
    return Verdict(HYPOTHESIS, result, "gamma_nats", arm["gamma"], arm["gamma"], lo, hi,
                   arm["p_gamma"], arm["n_targets"], reason)  # fmt: skip


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", None)
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
