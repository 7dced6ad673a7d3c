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

Two arms against each other (`--against ARM`, e.g. `--arm scan-top-10 --against random-10
--direction more`: "the top 10% of the rows by the scan carry more than a random 10%"): the
same per-target difference, arm minus ARM, on the seeds both trained (its interval at the run's
`eval.ci`, as the section's); "supported" when its interval lies on the `--direction` side of 0 (`more` or `less`, default `less`).

Assumptions: targets are exchangeable units; the two arms see the same data draw and
evaluation (same run), so their per-target gammas pair up.
"""

from __future__ import annotations

import sys

import numpy as np

from interp.fmt import fmt_est
from interp.hypothesis import Run, Verdict, analysis_section, decide, fmt, pop_option, run_script
from interp.stats import t_interval

HYPOTHESIS = "data_controls"


def _against(run: Run, rows: dict, arm: str, other: str, direction: int) -> Verdict:
    """arm minus other, per target, averaged over their shared seeds; t-interval over targets."""
    for name in (arm, other):
        if name not in rows:
            raise LookupError(f"{run.name}: no arm {name!r} (arms: {', '.join(rows)})")
        if "gamma_per_seed_target" not in rows[name]:
            raise LookupError(f"{run.name}: arm {name!r} has no per-seed gammas; rerun `interp analyze`")
    a, b = rows[arm]["gamma_per_seed_target"], rows[other]["gamma_per_seed_target"]
    shared = sorted(set(a) & set(b), key=int)
    if not shared:
        raise LookupError(f"{run.name}: arms {arm!r} and {other!r} share no seed")
    d = np.mean([np.asarray(a[sd]) - np.asarray(b[sd]) for sd in shared], axis=0)
    est = t_interval(d, float(((run.config or {}).get("eval") or {}).get("ci", 0.95)))  # the run's level, as the section's
    print(f"{run.name}: {arm} - {other}, per-target gamma on seeds {shared}: {fmt_est(est.to_dict())}")
    return Verdict(HYPOTHESIS, decide(est.lo, est.hi, direction=direction), "gamma_difference", est.mean, est.mean,
                   est.lo, est.hi, None, len(d), f"{arm} - {other}, seeds {shared}, t over {len(d)} targets")  # fmt: skip


def test(runs: list[Run], arm: str = "shuffle-across", against: str | None = None, direction: int = -1) -> Verdict:
    for run in runs:
        dc, why = analysis_section(run, "data_controls")
        if not dc:
            print(f"{run.name}: no data_controls section ({why})")
            continue
        rows = {r["arm"]: r for r in dc["rows"]}
        for r in dc["rows"]:
            print(f"{run.name} {r['arm']} ({r['variant']}, seeds {r['seeds']}): gamma {fmt_est(r['gamma_ci'])} "
                  f"p={fmt(r['p_gamma'])}; minus unmodified {fmt_est(r.get('minus_unmodified'))}")  # fmt: skip
        if against:
            return _against(run, rows, arm, against, direction)
        if arm not in rows:
            raise LookupError(f"{run.name}: no arm {arm!r} (arms: {', '.join(rows)})")
        d = rows[arm].get("minus_unmodified")
        if not d:
            raise LookupError(f"{run.name}: arm {arm!r} shares no seed with an unmodified arm (reference {dc.get('reference')})")
        return Verdict(HYPOTHESIS, decide(d["lo"], d["hi"], direction=direction), "gamma_difference", d["mean"], d["mean"],
                       d["lo"], d["hi"], None, d["n"], f"{arm} - {d['against']}, seeds {d['seeds']}, t over {d['n']} targets")  # fmt: skip
    return Verdict(HYPOTHESIS, "not testable", reason="no run with a data_controls section (a trait-matrix run with control data)")


def main(argv: list[str]) -> int:
    arm, argv = pop_option(argv, "--arm", "shuffle-across")
    against, argv = pop_option(argv, "--against")
    side, argv = pop_option(argv, "--direction", "less")
    if side not in ("less", "more"):
        print(f"--direction {side!r}: expected 'less' or 'more'", file=sys.stderr)
        return 2
    return run_script(HYPOTHESIS, lambda runs: test(runs, arm, against, 1 if side == "more" else -1), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
