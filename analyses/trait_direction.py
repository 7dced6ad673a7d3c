"""Hypothesis `trait_direction`: the trait direction emerges in the same-init student's
residual stream.

Claim: after training on the trait teacher's numbers, the student's activations (on the
evaluation questions) shift from its base along the trait direction (trait-prompted base
minus plain base), more than a control student's activations do; and a probe trained to
recognise the trait-prompted base calls more of the student's prompts trait-bearing.

Test (from analysis.json): one layer, chosen without looking at the students: the probe's
best layer for the teacher's base (highest held-out AUROC); without probes, the middle layer.
Effect = cos(direction, same-init shift) - cos(direction, control shift) at that layer. Its
CI: the paired bootstrap of the difference when analysis.json has it (`diff_vs_control`,
same prompt draws for both students); else a normal approximation from the two students'
separate CIs (se = CI width / 3.92, independent). p and the statistic (z) come from the same
normal approximation. The probe share (same-init vs control, at that layer) is printed as a
second, descriptive measure. With several runs, the first run that has the data is tested.

Verdict: "supported" if the CI lies above 0, "not supported" if below, else "inconclusive";
"not testable" without analysis.json or its trait_direction section.

Assumptions: the bootstrap distribution of the difference is roughly normal (for p); the
direction is one fixed vector per layer from the base model's prompted/plain contrast; one
seed per student is analysed (the first), so seed variance is not in the CI. n = prompts.
"""

from __future__ import annotations

import math
import sys

from scipy import stats

from interp.hypothesis import (
    Run,
    Verdict,
    analysis_section,
    decide,
    fmt,
    run_script,
    subliminal_roles,
)

HYPOTHESIS = "trait_direction"
Z = stats.norm.ppf(0.975)


def _layer(run: Run, spec: str | None, n_layers: int) -> tuple[int, str]:
    pr, _ = analysis_section(run, "probes")
    bases = (pr or {}).get("bases") or {}
    if spec in bases and bases[spec].get("best_layer") is not None:
        return int(bases[spec]["best_layer"]), f"probe best layer for {spec}"
    return n_layers // 2, "middle layer (no probe for the base)"


def test_run(run: Run) -> Verdict:
    td, why = analysis_section(run, "trait_direction")
    if not td:
        raise LookupError(f"{run.name}: trait direction not available ({why})")
    roles = subliminal_roles(run.summary) if run.summary else {}
    same, ctrl = roles.get("same-init", "same-init"), roles.get("control", "control")
    st = td.get("students") or {}
    if same not in st:
        raise LookupError(f"{run.name}: no trait direction for student '{same}'")
    s = st[same]
    spec = str(s.get("against", "")).split(":", 1)[-1] or None
    cos = s.get("cosine") or []
    layer, how = _layer(run, spec, len(cos))
    c_entry = st.get(ctrl) or s.get("control")
    if not c_entry:
        raise LookupError(f"{run.name}: no control student to compare with")
    cs, cc = cos[layer], c_entry["cosine"][layer]
    n = int(s.get("n_paired") or s.get("n") or 0)
    print(f"{run.name}: layer {layer} ({how}); cos(direction, shift): {same} {fmt(cs)} "
          f"[{fmt(s['lo'][layer])}, {fmt(s['hi'][layer])}], {ctrl} {fmt(cc)} "
          f"[{fmt(c_entry['lo'][layer])}, {fmt(c_entry['hi'][layer])}]")  # fmt: skip
    diff = s.get("diff_vs_control")
    if diff and diff.get("mean"):
        effect, lo, hi = diff["mean"][layer], diff["lo"][layer], diff["hi"][layer]
        se = (hi - lo) / (2 * Z)
        print("difference: paired bootstrap over prompts (diff_vs_control)")
    else:
        effect = cs - cc
        se = math.hypot(*((e["hi"][layer] - e["lo"][layer]) / (2 * Z) for e in (s, c_entry)))
        lo, hi = effect - Z * se, effect + Z * se
        print("difference: normal approximation from the two separate CIs")
    z = effect / se if se > 0 else float("nan")
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else float("nan")
    pr, _ = analysis_section(run, "probes")
    ps = (pr or {}).get("students") or {}
    if same in ps and ctrl in ps:
        print(f"probe share trait-bearing at layer {layer}: {same} "
              f"{fmt(ps[same]['share_trait'][layer])}, {ctrl} {fmt(ps[ctrl]['share_trait'][layer])}")  # fmt: skip
    result = decide(lo, hi, +1)
    reason = {"inconclusive": "the CI of the cosine difference contains 0 (or is undefined)",
              "not supported": "the control's shift is closer to the trait direction"}.get(result, "")  # fmt: skip
    if n == 0:
        reason = (reason + "; " if reason else "") + "number of prompts not recorded (n=0)"
    return Verdict(HYPOTHESIS, result, "z", z, effect, lo, hi, p, n, reason)


def test(runs: list[Run]) -> Verdict:
    reasons = []
    for run in runs:
        if run.experiment != "subliminal":
            reasons.append(f"{run.name}: not a subliminal run ({run.experiment})")
            continue
        try:
            return test_run(run)
        except (LookupError, KeyError, IndexError, TypeError) as e:
            reasons.append(str(e))
    return Verdict(HYPOTHESIS, "not testable", reason="; ".join(reasons))


if __name__ == "__main__":
    sys.exit(run_script(HYPOTHESIS, test, sys.argv[1:]))
