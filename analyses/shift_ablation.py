"""Hypothesis `shift_ablation`: ablating the teacher's trait direction at every layer removes at least half of gamma.

Claim: in a trait matrix (one prompted teacher per target), removing from each same-init
student's activation shift (student minus base, same input) its component along its own
teacher's direction v_l (teacher minus base at the answer positions of held-out number rows,
every layer at once) removes >= 50% of the transmission effect gamma, while a random direction
drawn with the activations' covariance removes less than 50%: the trait travels along the
direction the teacher's prompt writes.

Test (from analysis.json, section `shift_ablation`, `[analysis] shift_ablation = true`): for the
arm `--arm NAME` (default: the first in the section), the fraction removed, 1 - gamma_ablated /
gamma, of the conditions `own:all` and `random:all`, each with its Fieller t-interval over seeds
(or over targets with one seed). The other conditions (single layers, the next target's
direction) are printed.

Verdict: "supported" if the own-direction interval lies above 0.5 and the random-direction
interval below 0.5; "not supported" if the own-direction interval lies below 0.5; "inconclusive"
otherwise, also when an interval is unbounded (gamma not clearly non-zero); "not testable"
without the section.

Assumptions: the units (seeds, or targets with one seed) are independent; the base's and the
unablated students' scores are the run's own evaluations; the ablation is causal (later blocks
see the ablated activation) and the base is never ablated.
"""

from __future__ import annotations

import sys
from typing import Any

from interp.hypothesis import (
    Run,
    Verdict,
    analysis_section,
    fmt,
    fmt_ci,
    fmt_est,
    pop_option,
    run_script,
)

HYPOTHESIS = "shift_ablation"
THRESHOLD = 0.5
OWN, RANDOM = "own:all", "random:all"


def _interval(f: dict[str, Any]) -> tuple[float, float] | None:
    return (f["lo"], f["hi"]) if f.get("bounded") and f.get("lo") is not None else None


def decide_fraction(own: dict[str, Any], random: dict[str, Any], threshold: float = THRESHOLD) -> str:
    """The verdict from the two fractions removed ({mean, lo, hi, bounded}), as the docstring says."""
    o, r = _interval(own), _interval(random)
    if o is not None and o[1] < threshold:
        return "not supported"
    if o is not None and o[0] > threshold and r is not None and r[1] < threshold:
        return "supported"
    return "inconclusive"


def _show(f: dict[str, Any]) -> str:
    ci = fmt_ci(f["lo"], f["hi"]) if _interval(f) else "[unbounded]"
    return f"{fmt(f.get('mean'))} {ci}"


def test(runs: list[Run], arm: str | None = None) -> Verdict:
    for run in runs:
        sa, why = analysis_section(run, "shift_ablation")
        if not sa:
            print(f"{run.name}: no shift_ablation section ({why})")
            continue
        arms = sa.get("arms") or {}
        if not arms:
            raise LookupError(f"{run.name}: the shift_ablation section lists no arm")
        name = arm if arm is not None else next(iter(arms))
        if name not in arms:
            raise LookupError(f"{run.name}: no arm '{name}' (have {', '.join(arms)})")
        a = arms[name]
        print(f"{run.name} {name}: gamma {fmt_est(a['gamma_ci'])} p={fmt(a['p_gamma'])} unablated")
        for c, r in a["conditions"].items():
            print(f"  {c}: gamma {fmt_est(r['gamma_ci'])} p={fmt(r['p_gamma'])}; fraction removed {_show(r['fraction_removed'])}")
        own, rnd = a["conditions"][OWN]["fraction_removed"], a["conditions"][RANDOM]["fraction_removed"]
        result = decide_fraction(own, rnd)
        lo, hi = _interval(own) or (None, None)
        reason = (f"arm {name}: fraction removed own {_show(own)}, random {_show(rnd)}, "
                  f"over {own['n']} {own.get('over', 'units')}; threshold {THRESHOLD}")  # fmt: skip
        return Verdict(HYPOTHESIS, result, "fraction_removed", own["mean"], own["mean"], lo, hi, None, own["n"], reason)
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a shift_ablation section ([analysis] shift_ablation = true)")


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", None)
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
