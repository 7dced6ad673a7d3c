"""Hypothesis `first_order`: the theorem's first step predicts where the students go.

Claim: for a trait arm, the first-order change of every candidate's log-odds after one small
gradient step on each target's data (the student's own loss, at its initialisation) is
positively correlated, candidate by candidate, with the shift the trained students show; and
more with its own target's students than with the other targets' (the prediction carries the
target, not a pattern shared by every dataset).

Test (from analysis.json, section `first_order`, `[analysis] first_order = true`): for the arm
`--arm NAME` (default: the first trait arm), the row correlation (per target, Pearson over
candidates of predicted vs observed shifts, mean over targets) with its t-interval over targets
and the permutation p over target labels. The across-arm correlation of predicted and observed
per-target gamma is printed too.

Verdict: "supported" if the CI lies above 0 and p < 0.05, "not supported" if it lies below 0,
else "inconclusive"; "not testable" without the section.

Assumptions: targets are the units; the prediction is made on the first `first_order_rows`
rows of each dataset, and the observed shifts average the arm's seeds.
"""

from __future__ import annotations

import sys

from interp.fmt import fmt_est
from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script

HYPOTHESIS = "first_order"


def test(runs: list[Run], arm: str | None = None) -> Verdict:
    for run in runs:
        fo, why = analysis_section(run, "first_order")
        if not fo:
            print(f"{run.name}: no first_order section ({why})")
            continue
        arms = fo.get("arms") or {}
        for name, a in arms.items():
            print(f"{run.name} {name}: predicted gamma {fmt(a['predicted_gamma'])} observed {fmt(a['observed_gamma'])} "
                  f"row correlation {fmt_est(a['row_correlation_ci'])} p={fmt(a['p_row_correlation'])}")  # fmt: skip
        x = fo.get("across_arms") or {}
        if "pearson" in x:
            print(f"{run.name} across {x['n']} (arm, target) cells: pearson {fmt(x['pearson'])} "
                  f"[{fmt(x['pearson_ci'][0])}, {fmt(x['pearson_ci'][1])}]")  # fmt: skip
        if not arms:
            raise LookupError(f"{run.name}: the first_order section lists no arm")
        name = arm if arm is not None else next(iter(arms))
        if name not in arms:
            raise LookupError(f"{run.name}: no arm '{name}' (have {', '.join(arms)})")
        a = arms[name]
        ci = a["row_correlation_ci"]
        result = decide(ci["lo"], ci["hi"])
        if result == "supported" and not a["p_row_correlation"] < 0.05:
            result = "inconclusive"
        return Verdict(HYPOTHESIS, result, "row_correlation", a["row_correlation"], a["row_correlation"], ci["lo"],
                       ci["hi"], a["p_row_correlation"], ci["n"], f"arm {name}, CI over {ci['n']} targets")  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a first_order section ([analysis] first_order = true)")


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", None)
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
