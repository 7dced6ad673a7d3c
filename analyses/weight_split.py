"""Hypothesis `weight_split`: the part of a student's update inside its teacher's top singular subspace carries gamma.

Claim: in a trait matrix with finetuned teachers, each same-init student's update split per
weight matrix into its two-sided projection onto its own teacher's top-r singular subspace
("inside") and the rest, the inside part alone (base + inside) keeps the transmission effect:
gamma(inside only) exceeds gamma(inside only) for a random subspace of equal rank, and keeps at
least half of the student's full gamma.

Test (from analysis.json's `weight_split`, written by `interp analyze` with `[analysis]
weight_split = true`): for one arm (`--arm NAME`; default the first arm the section holds, in
config order), the difference d = gamma(inside only) - gamma(random inside only), paired over
seeds (several seeds) or else over targets, with its t-interval; and the retained share
gamma(inside only) / gamma(full).

Verdict: "supported" if the interval of d lies above 0, the full gamma is > 0 and the inside
keeps >= 50% of it; "not supported" if the interval of d lies at or below 0 (hi <= 0);
"inconclusive" otherwise (the interval contains 0, the inside keeps less than half, the full
gamma is not positive, or one unit gives no interval). "not testable" without the section (a
run without finetuned teachers, fewer than two targets, or the analysis off). p is the
two-sided sign-flip p of the paired differences.

Assumptions: seeds (or targets) are independent units; a random subspace of equal rank holds
about r^2 / (d_out d_in) of the update's energy, so the control asks whether the teacher's
subspace is special, not whether an equally large part of the update would do (the energy
fractions are printed for that reading); scoring is the run's log-prob score, so the test is
about log-odds, not sampled answers.
"""

from __future__ import annotations

import sys

from interp.hypothesis import Run, Verdict, analysis_section, fmt, fmt_est, pop_option, run_script

HYPOTHESIS = "weight_split"
MIN_SHARE = 0.5  # the inside must keep at least this share of the full gamma


def pick_arm(section: dict, name: str | None) -> tuple[str, dict]:
    arms = section.get("arms") or {}
    if not arms:
        why = "; ".join(f"{k}: {v}" for k, v in (section.get("skipped") or {}).items())
        raise LookupError("no arm was split" + (f" ({why})" if why else ""))
    if name is not None:
        if name not in arms:
            raise LookupError(f"no arm '{name}' in weight_split (arms: {', '.join(arms)})")
        return name, arms[name]
    return next(iter(arms.items()))


def decide_split(d: dict, share: float | None, g_full: float) -> tuple[str, str]:
    """(result, reason) by the rule in the module doc."""
    if d["n"] < 2:
        return "inconclusive", f"one {d['unit'][:-1]}: no interval"
    if d["hi"] <= 0:
        return "not supported", "gamma(inside only) is not above gamma(random inside only): the interval of d lies at or below 0"
    if d["lo"] <= 0:
        return "inconclusive", "the interval of d contains 0"
    if not g_full > 0:
        return "inconclusive", f"the full gamma is {fmt(g_full)}: nothing to keep"
    if share is None or share < MIN_SHARE:
        return "inconclusive", f"the inside keeps {fmt(share)} of the full gamma (< {MIN_SHARE})"
    return "supported", ""


def test(runs: list[Run], arm_name: str | None = None) -> Verdict:
    if len(runs) != 1:
        raise LookupError("give exactly one run directory")
    section, why = analysis_section(runs[0], HYPOTHESIS)
    if not section:
        return Verdict(HYPOTHESIS, "not testable", reason=f"{runs[0].name}: weight_split not available ({why})")
    name, arm = pick_arm(section, arm_name)
    for cond, g in arm["gamma"].items():
        print(f"{name}: {cond}: gamma {fmt_est(g['interval'])} over {g['interval']['unit']}, p {fmt(g['p_gamma'])}")
    e = arm["energy_inside"]
    print(f"{name}: energy inside the teacher's top-{section['rank']} subspace {fmt(e['teacher']['mean'])}, "
          f"inside the random one {fmt(e['random']['mean'])} (means over students)")  # fmt: skip
    print(f"{name}: inside x 1 + outside reproduces the run's scores to {fmt(arm['reproduction']['max_abs_log_odds_diff'])} nats")
    d = arm["contrast"]["inside_minus_random_inside"]
    share, g_full = arm["contrast"]["inside_share_of_full"], arm["gamma"]["full"]["gamma"]
    print(f"test: gamma(inside) - gamma(random inside) = {fmt_est(d)} over {d['unit']}, sign-flip p {fmt(d['p_sign_flip'])}; "
          f"inside keeps {fmt(share)} of the full gamma {fmt(g_full)}")  # fmt: skip
    result, reason = decide_split(d, share, g_full)
    lo, hi = (d["lo"], d["hi"]) if d["n"] > 1 else (None, None)
    return Verdict(HYPOTHESIS, result, "gamma_inside_minus_random", d["mean"], d["mean"], lo, hi, d["p_sign_flip"],
                   d["n"], f"arm {name}: {reason}" if reason else f"arm {name}")  # fmt: skip


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", None)
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
