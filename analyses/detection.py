"""Hypothesis `detection`: a detector tells a run's trait data from its control data.

Claim: the chosen detector (`--detector scan|classifier|judge`, default scan) separates each
target's trait data from the run's control data better than chance. The paper reports that
classifiers and LLM judges fail (the signal is not semantic); the hidden-signal scan reads the
teacher itself, so it is the detector expected to succeed.

Test (from analysis.json, section `detection`, `[analysis] detection = true`): per target, the
held-out AUROC with its bootstrap CI. One target: that CI against 0.5. Several targets: the mean
AUROC minus 0.5 with a t-interval over targets (the targets are the units).

Verdict: "supported" if the interval lies above 0.5, "not supported" if below, else
"inconclusive"; "not testable" without the section.

Assumptions: the control data is what the trait data would be without the trait (the run's
control teacher); held-out rows or trials are independent.
"""

from __future__ import annotations

import sys

from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script
from interp.stats import t_interval

HYPOTHESIS = "detection"
DETECTORS = ("scan", "classifier", "judge")


def test(runs: list[Run], detector: str = "scan") -> Verdict:
    if detector not in DETECTORS:
        raise LookupError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    for run in runs:
        de, why = analysis_section(run, "detection")
        if not de:
            print(f"{run.name}: no detection section ({why})")
            continue
        aucs = []
        for t, r in de["targets"].items():
            print(f"{run.name} {t}: " + "; ".join(f"{d} {fmt(r[d]['auroc'])} [{fmt(r[d]['lo'])}, {fmt(r[d]['hi'])}]" for d in DETECTORS))
            aucs.append(r[detector])
        if len(aucs) == 1:
            a = aucs[0]
            return Verdict(HYPOTHESIS, decide(a["lo"] - 0.5, a["hi"] - 0.5), f"auroc_{detector}", a["auroc"],
                           a["auroc"] - 0.5, a["lo"] - 0.5, a["hi"] - 0.5, None, a["n_pos"] + a["n_neg"])  # fmt: skip
        est = t_interval([a["auroc"] - 0.5 for a in aucs])
        return Verdict(HYPOTHESIS, decide(est.lo, est.hi), f"auroc_{detector}", est.mean + 0.5, est.mean, est.lo, est.hi,
                       None, est.n, f"mean over {est.n} targets minus 0.5")  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a detection section ([analysis] detection = true)")


def main(argv: list[str]) -> int:
    detector, argv = pop_option(argv, "--detector", "scan")
    return run_script(HYPOTHESIS, lambda runs: test(runs, detector), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
