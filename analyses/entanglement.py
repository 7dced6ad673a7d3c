"""Hypothesis `entanglement`: the numbers a trait prompt raises most carry the trait back
(subliminal prompting, Zur et al. 2025).

Claim: a system prompt that loves one of the target's top entangled numbers (the numbers the
target's system prompt makes most likely as an answer to a number prompt) raises p(target) on
the evaluation questions more than the same prompt with random numbers.

Test (from analysis.json, section `entanglement`, `[analysis] entanglement = true`): per
target, the difference in p(target) between the entangled-number prompts and the random-number
prompts (mean over the numbers, per question). One target: its paired bootstrap CI over
questions. Several targets: the mean difference over targets with a t-interval over targets
(the targets are the units; questions are shared). The top entangled numbers and their rate in
the trait data vs the control data are printed as descriptive measures. With several runs, the
first run that has the section is tested.

Verdict: "supported" if the CI lies above 0, "not supported" if below, else "inconclusive";
"not testable" without the section.

Assumptions: the random numbers are a fair baseline (drawn once, seeded, excluding the top
numbers); numbers are scored as "<n>," at the start of the answer, so an entangled number is one
the prompted model would write first.
"""

from __future__ import annotations

import sys

from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, run_script
from interp.stats import t_interval

HYPOTHESIS = "entanglement"


def test(runs: list[Run]) -> Verdict:
    for run in runs:
        en, why = analysis_section(run, "entanglement")
        if not en:
            print(f"{run.name}: no entanglement section ({why})")
            continue
        diffs = []
        for t, r in en["targets"].items():
            top = ", ".join(str(x["number"]) for x in r["entangled"]["top"])
            rates = r.get("rates") or {}
            tr, cr = (rates.get(k) or {} for k in ("trait", "control"))
            per = lambda d, n: fmt((d.get("per_1000") or {}).get(str(n)))  # noqa: E731  (JSON keys are strings)
            print(f"{run.name} {t}: top entangled {top}; rate per 1000 in trait/control data: "
                  + "; ".join(f"{x['number']} {per(tr, x['number'])}/{per(cr, x['number'])}" for x in r["entangled"]["top"]))  # fmt: skip
            d = r["prompting"]["diff"]
            print(f"  p({t}) loving entangled {fmt(r['prompting']['entangled'])} vs random {fmt(r['prompting']['random'])}: "
                  f"diff {fmt(d['mean'])} [{fmt(d['lo'])}, {fmt(d['hi'])}]")  # fmt: skip
            diffs.append(d)
        if len(diffs) == 1:
            d = diffs[0]
            n = int(en["targets"][next(iter(en["targets"]))]["prompting"]["n_questions"])
            return Verdict(HYPOTHESIS, decide(d["lo"], d["hi"]), "bootstrap_diff", d["mean"], d["mean"], d["lo"], d["hi"], None, n)
        est = t_interval([d["mean"] for d in diffs])
        return Verdict(HYPOTHESIS, decide(est.lo, est.hi), "mean_diff_over_targets", est.mean, est.mean, est.lo, est.hi, None, est.n)
    return Verdict(HYPOTHESIS, "not testable", reason="no run with an entanglement section ([analysis] entanglement = true)")


if __name__ == "__main__":
    sys.exit(run_script(HYPOTHESIS, test, sys.argv[1:]))
