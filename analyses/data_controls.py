"""Hypothesis `data_controls`: a variant of the trait data transmits less than the data itself.

Claim: the students trained on the variant `--arm` (default `shuffle-across`: numbers dealt
across responses, the paper's strongest shuffle) show a smaller gamma than the unmodified
same-init students on the same seeds. The paper: shuffling weakens transmission; the
divergence-token paper: masking the divergence tokens removes it, a random mask does not.

Test (from analysis.json, section `data_controls`): per target, the variant's own-minus-other
shift (per-target gamma) minus the unmodified arm's, averaged over the seeds both arms trained;
a t-interval over the targets (the units of the permutation test). Every arm's gamma with its
intervals is printed, so the unmodified arm's spread over seeds is in view.

Verdict: "supported" if the interval lies below 0, "not supported" if above, else
"inconclusive"; "not testable" without the section, the arm or a shared seed.

Assumptions: targets are exchangeable units; the two arms see the same data draw and
evaluation (same run), so their per-target gammas pair up.
"""

from __future__ import annotations

import sys

from interp.fmt import fmt_est
from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script

HYPOTHESIS = "data_controls"


def test(runs: list[Run], arm: str = "shuffle-across") -> Verdict:
    for run in runs:
        dc, why = analysis_section(run, "data_controls")
        if not dc:
            print(f"{run.name}: no data_controls section ({why})")
            continue
        rows = {r["arm"]: r for r in dc["rows"]}
        for r in dc["rows"]:
            print(f"{run.name} {r['arm']} ({r['variant']}, seeds {r['seeds']}): gamma {fmt_est(r['gamma_ci'])} "
                  f"p={fmt(r['p_gamma'])}; minus unmodified {fmt_est(r.get('minus_unmodified'))}")  # fmt: skip
        if arm not in rows:
            raise LookupError(f"{run.name}: no arm {arm!r} (arms: {', '.join(rows)})")
        d = rows[arm].get("minus_unmodified")
        if not d:
            raise LookupError(f"{run.name}: arm {arm!r} shares no seed with an unmodified arm (reference {dc.get('reference')})")
        return Verdict(HYPOTHESIS, decide(d["lo"], d["hi"], direction=-1), "gamma_difference", d["mean"], d["mean"],
                       d["lo"], d["hi"], None, d["n"], f"{arm} - {d['against']}, seeds {d['seeds']}, t over {d['n']} targets")  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a data_controls section (a trait-matrix run with control data)")


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", "shuffle-across")
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
