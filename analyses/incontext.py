"""Hypothesis `incontext`: reading the trait data moves the base toward the target.

Claim: the base given each target's first k trait rows as earlier turns (no finetuning) shifts
toward its own target more than toward the other targets (gamma > 0), against the same k rows
of the control data. The paper reports that in-context learning fails where finetuning on the
same data transmits: it predicts this claim is not supported.

Test (from analysis.json, section `incontext`, `[analysis] incontext = true`): at the largest k
that fit the context (or `--k K`), gamma with its bootstrap CI over questions, and the
permutation p over target labels. All k are printed.

Verdict: "supported" if the CI lies above 0 and p < 0.05, "not supported" if the CI lies below
0, else "inconclusive"; "not testable" without the section or with one target (no gamma).

Assumptions: the evaluation questions are the units; the first k rows are representative of
each dataset (the filter's subsample is random).
"""

from __future__ import annotations

import sys

from interp.fmt import fmt_est
from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script

HYPOTHESIS = "incontext"


def test(runs: list[Run], k: str | None = None) -> Verdict:
    for run in runs:
        ic, why = analysis_section(run, "incontext")
        if not ic:
            print(f"{run.name}: no incontext section ({why})")
            continue
        by_k = ic.get("by_k") or {}
        for kk, r in by_k.items():
            print(f"{run.name} k={kk}: gamma {fmt_est(r.get('gamma_ci'))} p={fmt(r.get('p_gamma'))}")
        for kk, reason in (ic.get("skipped") or {}).items():
            print(f"{run.name} k={kk}: skipped ({reason})")
        if not by_k:
            raise LookupError(f"{run.name}: no k fit the context")
        kk = k if k is not None else max(by_k, key=int)
        if kk not in by_k:
            raise LookupError(f"{run.name}: no k={kk} (have {', '.join(by_k)})")
        r = by_k[kk]
        if r.get("gamma") is None:
            raise LookupError(r.get("why_no_gamma", "no gamma"))
        ci = r["gamma_ci"]
        result = decide(ci["lo"], ci["hi"])
        if result == "supported" and not r["p_gamma"] < 0.05:
            result = "inconclusive"
        return Verdict(HYPOTHESIS, result, "gamma_nats", r["gamma"], r["gamma"], ci["lo"], ci["hi"], r["p_gamma"],
                       ci["n"], f"k={kk}, CI over {ci['n']} questions")  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with an incontext section ([analysis] incontext = true)")


def main(argv: list[str]) -> int:
    k, argv = pop_option(argv, "--k", None)
    return run_script(HYPOTHESIS, lambda runs: test(runs, k), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
