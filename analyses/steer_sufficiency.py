"""Hypothesis `steer_sufficiency`: adding the own teacher's direction to the base at one layer raises gamma above 0 (p < 0.05) at some scale, more than the random control at the same layer and scale.

Claim: in a trait matrix (one prompted teacher per target), steering the base at a single layer
l by alpha v_l[t], where v_l[t] is target t's teacher minus the base at the answer positions of
held-out number rows, moves the base toward target t more than toward the other targets (gamma >
0 over the k bases steered, one per target), and more than a random direction of the same norm
drawn with the activations' covariance does at that same layer and alpha: the direction the
teacher's prompt writes is enough, on its own, to carry the trait.

Test (from analysis.json, section `steer_sufficiency`, `[analysis] steer_sufficiency = true`):
every own-direction cell (layer, alpha), m of them (layers x scales, fixed by the config before
any data), with
- p_gamma: the permutation p over target labels of gamma > 0 of the own-steered bases;
- p_control: the one-sided paired t-test over targets of own minus random per-target gamma > 0
  at the same layer and alpha.

With several seeds (`[analysis] sufficiency_seeds`: replicates with their own rows for the
directions, random control and sampling), both p come from the shifts averaged over seeds, and
each cell also has own minus random per seed with its t-interval over seeds (the run's [eval] ci).

Verdict, with the family-wise level 0.05 split over the m cells (Bonferroni; for "at least one
cell", Holm's first step is the same):
- "supported" if some cell has p_gamma < 0.05 / m and p_control < 0.05 / m and, with several
  seeds, the interval over seeds of its own minus random lies above 0 (the cell's result does not
  hang on one draw of the rows the direction is estimated on);
- "not supported" if at every cell the own gamma's t-interval over targets (the run's [eval] ci)
  lies below 0 or the interval of own minus random lies below 0 (every cell shows steering
  lowering gamma or doing less than the control; an intersection-union test, no correction);
- "inconclusive" otherwise (also when an undefined p counts as 1: a t-test over targets whose
  differences have no spread); "not testable" without the section.
The printed cell is the passing cell with the smallest max(p_gamma, p_control) when the claim
is supported, else the cell with the smallest (the first on ties). The
permutation p cannot go below 1/k!: with k = 4 targets it is 0.042, above 0.05 / 9, so fewer
than 5 targets cannot support the claim at the default 3 layers x 3 scales (the reason says so).

Assumptions: the targets are independent units; the unsteered base is scored in the same stage
as the steered ones; the vector is added at every position of the prompt and of the sampled
answer; the sampled trait rate is reported beside, not part of the rule.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from interp.hypothesis import Run, Verdict, analysis_section, fmt, fmt_est, run_script

HYPOTHESIS = "steer_sufficiency"
ALPHA = 0.05


def _p(x: float | None) -> float:
    """A p-value, with an undefined one counted as 1 (no evidence)."""
    return float(x) if x is not None and math.isfinite(x) else 1.0


def _worst(c: dict[str, Any]) -> float:
    return max(_p(c.get("p_gamma")), _p(c["vs_random"].get("p")))


def _seeds_agree(c: dict[str, Any]) -> bool:
    """True without seeds; else the interval over seeds of own minus random lies above 0."""
    vs = (c.get("over_seeds") or {}).get("vs_random")
    if vs is None:
        return True
    lo = vs.get("lo")
    return lo is not None and math.isfinite(lo) and lo > 0


def _below(est: dict[str, Any]) -> bool:
    hi = est.get("hi")
    return hi is not None and math.isfinite(hi) and hi < 0


def decide_cells(cells: list[dict[str, Any]], alpha: float = ALPHA) -> tuple[str, dict[str, Any], float]:
    """(verdict, the printed own cell, the per-cell level alpha / m), as the docstring says."""
    own = [c for c in cells if c["source"] == "own"]
    if not own or any("vs_random" not in c for c in own):
        raise LookupError("the section has no own-direction cell with its random control")
    level = alpha / len(own)
    best = min(own, key=_worst)
    passing = [c for c in own if _worst(c) < level and _seeds_agree(c)]
    if passing:
        return "supported", min(passing, key=_worst), level
    if all(_below(c["gamma_ci"]) or _below(c["vs_random"]) for c in own):
        return "not supported", best, level
    return "inconclusive", best, level


def _line(c: dict[str, Any]) -> str:
    rate = fmt_est(c["rate_shift"]) if c.get("rate_shift") else "not sampled"
    out = (f"  {c['source']} L{c['layer']} x{fmt(c['alpha'])} (alpha|v|/|h| {fmt(c.get('scale_ratio'))}): "
           f"gamma {fmt_est(c['gamma_ci'])} p={fmt(c['p_gamma'])}; rate shift {rate}")  # fmt: skip
    if "vs_random" in c:
        out += f"; own - random {fmt_est(c['vs_random'])} p={fmt(c['vs_random'].get('p'))}"
    o = c.get("over_seeds")
    if o:
        out += f"; over {o['seeds']} seeds: gamma {fmt_est(o['gamma_ci'])}"
        if o.get("vs_random"):
            out += f", own - random {fmt_est(o['vs_random'])} p={fmt(o['vs_random'].get('p'))}"
    return out


def test(runs: list[Run]) -> Verdict:
    for run in runs:
        ss, why = analysis_section(run, "steer_sufficiency")
        if not ss:
            print(f"{run.name}: no steer_sufficiency section ({why})")
            continue
        cells = ss.get("cells") or []
        print(f"{run.name}: base {ss.get('model')}, {len(ss.get('targets') or [])} targets, layers {ss.get('layers')}, "
              f"scales {ss.get('scales')}")  # fmt: skip
        for c in cells:
            print(_line(c))
        result, best, level = decide_cells(cells)
        g = best["gamma_ci"]
        floor = 1 / max(int(best.get("n_permutations") or 1), 1)
        reason = (f"best own cell L{best['layer']} x{fmt(best['alpha'])}: gamma {fmt_est(g)}, p_gamma {fmt(best['p_gamma'])}, "
                  f"own - random {fmt_est(best['vs_random'])} p_control {fmt(best['vs_random'].get('p'))}; "
                  f"per-cell level {fmt(level)} (0.05 over {round(ALPHA / level)} cells)")  # fmt: skip
        if floor >= level:
            reason += f"; the smallest permutation p with {g['n']} targets is {fmt(floor)}, not below the level"
        o = best.get("over_seeds") or {}
        if o.get("vs_random"):
            reason += (f"; over {o['seeds']} seeds own - random {fmt_est(o['vs_random'])}"
                       + ("" if _seeds_agree(best) else ", not above 0")
                       + (" (2 seeds: one degree of freedom)" if o["seeds"] == 2 else ""))  # fmt: skip
        return Verdict(HYPOTHESIS, result, "gamma", best["gamma"], g["mean"], g["lo"], g["hi"], best["p_gamma"], g["n"], reason)
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a steer_sufficiency section ([analysis] steer_sufficiency = true)")


def main(argv: list[str]) -> int:
    return run_script(HYPOTHESIS, test, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
