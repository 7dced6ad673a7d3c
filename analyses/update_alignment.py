"""Hypothesis `update_alignment`: the same-init student's update aligns with the teacher's
update more than the control student's does.

Claim: finetuning on the trait teacher's numbers moves the student's weights along the
teacher's own finetuning delta (cos(dW_student, dW_teacher)), more than finetuning on a
neutral teacher's numbers does; and at initialisation the imitation gradient on trait data
already points toward the teacher (Cloud et al.'s theorem), more than on control data.

Test (from analysis.json, written by `interp analyze`):
  primary, if both students have >= 2 seeds: overall update cosine per seed, same-init vs
    control, Welch t-test and Welch CI of the difference (the seed is the unit);
  otherwise: gradient alignment, per-batch cos(-gradient, dW_teacher) on trait data vs
    control data at the teacher's base, Welch over batches (the batch is the unit).
The other measure, frac_positive and each CI are printed. Several runs pool their units.
Verdict: "supported" if the CI of the difference lies above 0, "not supported" if below,
"inconclusive" otherwise (also when too few units give no CI); "not testable" without a
finetuned teacher (prompt-mode runs have no teacher delta) or without analysis.json.

Assumptions: seeds (or batches) are independent draws; Welch allows unequal variances but
relies on approximate normality of the means, which few seeds do not guarantee. Batches of
one dataset share a model, so they are not independent of each other in every respect.
"""

from __future__ import annotations

import sys

from interp.hypothesis import (
    Run,
    Verdict,
    analysis_section,
    decide,
    fmt,
    fmt_est,
    from_comparison,
    run_script,
    subliminal_roles,
    welch,
)

HYPOTHESIS = "update_alignment"


def _roles(run: Run) -> tuple[str, str]:
    roles = subliminal_roles(run.summary or {}) if run.summary else {}
    return roles.get("same-init", "same-init"), roles.get("control", "control")


def collect(run: Run) -> dict[str, list[float]]:
    """Per-unit values for this run: update cosines per seed, gradient cosines per batch."""
    same, ctrl = _roles(run)
    out: dict[str, list[float]] = {"upd_same": [], "upd_ctrl": [], "grad_same": [], "grad_ctrl": []}
    ua, why_ua = analysis_section(run, "update_alignment")
    if ua:
        st = ua.get("students") or {}
        for key, name in (("upd_same", same), ("upd_ctrl", ctrl)):
            if name in st:
                seeds = (st[name].get("per_seed") or {}).values()
                # a seed whose LoRA init is its teacher's has an update cosine inflated by construction
                shared = sum(bool(e.get("shares_teacher_init")) for e in seeds)
                vals = [e.get("overall") for e in seeds if not e.get("shares_teacher_init")]
                out[key] = [float(v) for v in vals if v is not None]
                fp = st[name].get("overall")
                print(f"{run.name}: update cos, {name}: {fmt_est(fp)} over all seeds; {len(out[key])} seed(s) "
                      f"used" + (f", {shared} left out (LoRA init shared with the teacher)" if shared else ""))
    else:
        print(f"{run.name}: update alignment not available ({why_ua})")
    ga, why_ga = analysis_section(run, "gradient_alignment")
    if ga:
        ds = ga.get("datasets") or {}
        for key, name in (("grad_same", same), ("grad_ctrl", ctrl)):
            if name in ds:
                out[key] = [float(c) for c in ds[name].get("cos") or [] if c is not None]
                print(f"{run.name}: gradient cos, {name} ({ds[name].get('data')} data): "
                      f"{fmt_est(ds[name].get('cos_ci'))}, frac_positive "
                      f"{fmt(ds[name].get('frac_positive'))}, {len(out[key])} batch(es)")  # fmt: skip
    else:
        print(f"{run.name}: gradient alignment not available ({why_ga})")
    return out


def test(runs: list[Run]) -> Verdict:
    pooled: dict[str, list[float]] = {}
    reasons = []
    for run in runs:
        if run.experiment != "subliminal":
            reasons.append(f"{run.name}: not a subliminal run ({run.experiment})")
            continue
        for k, v in collect(run).items():
            pooled.setdefault(k, []).extend(v)
        if run.analysis is None:
            reasons.append(f"{run.name}: {run.problems.get('analysis')}")
        else:
            for sec, why in (run.analysis.get("missing") or {}).items():
                if sec in ("update_alignment", "gradient_alignment"):
                    reasons.append(f"{run.name}: {sec} missing ({why})")
    u_s, u_c = pooled.get("upd_same", []), pooled.get("upd_ctrl", [])
    g_s, g_c = pooled.get("grad_same", []), pooled.get("grad_ctrl", [])
    if len(u_s) >= 2 and len(u_c) >= 2:
        c, what = welch(u_s, u_c), "update cosine over seeds"
    elif len(g_s) >= 2 and len(g_c) >= 2:
        c, what = welch(g_s, g_c), "gradient cosine over batches (fewer than 2 seeds per student)"
    elif (u_s and u_c) or (g_s and g_c):
        a, b = (u_s, u_c) if u_s and u_c else (g_s, g_c)
        c = welch(a, b)
        return from_comparison(HYPOTHESIS, c, "inconclusive",
                               "fewer than 2 units per student (seeds and batches): no CI")  # fmt: skip
    else:
        why = "; ".join(reasons) or "same-init and control students not both in analysis.json"
        return Verdict(HYPOTHESIS, "not testable", reason=why)
    print(f"test: {what}: same-init - control = {fmt(c.effect)} [{fmt(c.lo)}, {fmt(c.hi)}], "
          f"Welch t = {fmt(c.statistic)}, p = {fmt(c.p)}, n = {c.n}")  # fmt: skip
    result = decide(c.lo, c.hi, +1)
    reason = {"inconclusive": f"the CI of the {what} difference contains 0 (or is undefined)",
              "not supported": f"the control's {what} is the higher one"}.get(result, "")  # fmt: skip
    return from_comparison(HYPOTHESIS, c, result, reason)


if __name__ == "__main__":
    sys.exit(run_script(HYPOTHESIS, test, sys.argv[1:]))
