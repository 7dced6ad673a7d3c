"""Hypothesis `data_controls`: a variant of the trait data transmits less than the data itself.

Claim: the students trained on the variant `--arm` (default `shuffle-across`: numbers dealt
across responses, the paper's strongest shuffle) show a smaller gamma than the unmodified
same-init students on the same seeds. The paper: shuffling weakens transmission; the
divergence-token paper: masking the divergence tokens removes it, a random mask does not.

Test (from analysis.json, section `data_controls`): per seed the variant arm shares with the
unmodified arm (the first "unmodified" row on the teacher's base), the difference
gamma(variant) - gamma(unmodified); its t-interval over those seeds. With one shared seed there is
no interval: the difference is printed and the verdict is "inconclusive".

Verdict: "supported" if the interval lies below 0, "not supported" if above, else
"inconclusive"; "not testable" without the section or the arm.

Assumptions: per-seed gammas of the two arms pair up (same data draw and evaluation); the
unmodified arm's spread over its seeds (printed) is the scale of a chance difference.
"""

from __future__ import annotations

import sys

from interp.fmt import fmt_est
from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script
from interp.stats import t_interval

HYPOTHESIS = "data_controls"


def test(runs: list[Run], arm: str = "shuffle-across") -> Verdict:
    for run in runs:
        dc, why = analysis_section(run, "data_controls")
        if not dc:
            print(f"{run.name}: no data_controls section ({why})")
            continue
        rows = {r["arm"]: r for r in dc["rows"]}
        for r in dc["rows"]:
            print(f"{run.name} {r['arm']} ({r['variant']}): gamma {fmt_est(r['gamma_ci'])} p={fmt(r['p_gamma'])}")
        ref = next((r for r in dc["rows"] if r["variant"] == "unmodified" and r["seeds"]), None)
        if arm not in rows or ref is None:
            raise LookupError(f"{run.name}: no arm {arm!r} or no unmodified arm (arms: {', '.join(rows)})")
        arms = (run.summary or {})["matrix"]["arms"]
        var_g = dict(zip(rows[arm]["seeds"], arms[arm]["gamma_per_seed"]))
        ref_g = dict(zip(ref["seeds"], arms[ref["arm"]]["gamma_per_seed"]))
        shared = sorted(set(var_g) & set(ref_g))
        if not shared:
            raise LookupError(f"{run.name}: arms {arm!r} and {ref['arm']!r} share no seed")
        diffs = [var_g[s] - ref_g[s] for s in shared]
        print(f"{arm} - {ref['arm']} per shared seed {shared}: {', '.join(fmt(d) for d in diffs)}; "
              f"{ref['arm']} over its seeds: {fmt_est(ref['gamma_ci'])}")  # fmt: skip
        est = t_interval(diffs)
        if est.n < 2:
            return Verdict(HYPOTHESIS, "inconclusive", "gamma_difference", est.mean, est.mean, float("nan"), float("nan"),
                           None, est.n, "one shared seed: no interval")  # fmt: skip
        return Verdict(HYPOTHESIS, decide(est.lo, est.hi, direction=-1), "gamma_difference", est.mean, est.mean,
                       est.lo, est.hi, None, est.n)  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a data_controls section (a trait-matrix run with control data)")


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", "shuffle-across")
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
