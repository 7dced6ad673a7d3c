"""Hypothesis `mlp_theorem` (Cloud et al.'s MLP claim): in the MLP auxiliary-logit experiment, a
student distilled only on the teacher's auxiliary logits (on noise) learns to classify digits
when it starts from the teacher's initialisation (accuracy well above chance), and not when it
starts from another seed's init (accuracy at chance).

Test: per m, held-out accuracy of same-init vs cross-init students (target "aux"; "all" if the
run has no aux students), Welch t-test and Welch CI of the difference over seeds, on the
per-seed accuracies the summary stores (`per_m.<m>.<kind>.acc.per_seed`; a summary written
before they were stored is left out, with a line saying so). A paired t over teachers
(student i of both kinds imitates teacher i) is printed as a check. Several runs pool seeds.

Primary comparison (fixed before looking): the largest m of the sweep, where the paper's
effect is largest, or the m given by `--m M` (the paper's headline is m = 3); m = 1 with aux
targets is a built-in null (a softmax over one logit has no gradient) and is only printed.
Holm-adjusted p over the other m is printed too.
The claim's two halves, per m, on the 95% t-intervals over seeds (`interp.mlp.claim`):
same-init interval entirely above chance + 0.05, cross-init interval inside chance +- 0.05.
Verdict: "supported" if at the primary m both halves hold and the Welch CI of same - cross lies
above 0; "not supported" if the data exclude a half (same-init interval below chance + 0.05, or
cross-init interval outside the band) or the Welch CI lies below 0; else "inconclusive"; "not
testable" if no MLP run with both kinds is given.

Assumptions: seeds are independent (cross-init students reuse other seeds' inits, a mild
dependence Welch ignores); accuracy means over 25 seeds are close to normal.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from scipy import stats

from interp.hypothesis import (
    Comparison,
    Run,
    Verdict,
    decide,
    fmt,
    from_comparison,
    pop_option,
    run_script,
    welch,
)
from interp.mlp.claim import claim_check

HYPOTHESIS = "mlp_theorem"


def per_seed(block: dict[str, Any], kind: str) -> list[float] | None:
    acc = (block.get(kind) or {}).get("acc") or {}
    return None if "per_seed" not in acc else [float(a) for a in acc["per_seed"]]


def pooled(runs: list[Run], m: str, kind: str) -> list[float]:
    out: list[float] = []
    for run in runs:
        block = ((run.summary or {}).get("per_m") or {}).get(m) or {}
        if kind in block:
            out += per_seed(block, kind) or []
    return out


def compare_m(runs: list[Run], m: str, target: str) -> Comparison | None:
    same_k, cross_k = f"same-init/{target}", f"cross-init/{target}"
    a_all, b_all = [], []
    for run in runs:
        block = ((run.summary or {}).get("per_m") or {}).get(m) or {}
        if same_k not in block or cross_k not in block:
            continue
        a, b = per_seed(block, same_k), per_seed(block, cross_k)
        if a is None or b is None:
            print(
                f"  {run.name} m={m}: no per-seed accuracies in summary.json (an older run): left out; rerun it"
            )
            continue
        a_all += a
        b_all += b
        if len(a) == len(b) and len(a) > 1 and np.std(np.subtract(a, b)) > 0:
            t, p = stats.ttest_rel(a, b)
            print(f"  {run.name} m={m}: paired over teachers t = {fmt(t)}, p = {fmt(p)}")
    return welch(a_all, b_all) if a_all else None


def test(runs: list[Run], primary_m: str | None = None) -> Verdict:
    mlp = [r for r in runs if r.experiment == "mlp-aux-logits" and r.summary]
    for r in runs:
        if r not in mlp:
            print(
                f"skipped {r.name}: not a finished MLP run ({r.problems.get('summary') or r.experiment})"
            )
    if not mlp:
        return Verdict(HYPOTHESIS, "not testable", reason="no finished mlp-aux-logits run given")
    ms = sorted({m for r in mlp for m in r.summary.get("per_m", {})}, key=int)
    kinds = {k for r in mlp for b in r.summary.get("per_m", {}).values() for k in b}
    target = "aux" if {"same-init/aux", "cross-init/aux"} <= kinds else "all"
    results: dict[str, Comparison] = {}
    claims: dict[str, dict[str, Any]] = {}
    chance = float(mlp[0].summary.get("chance") or 0.1)
    for m in ms:
        c = compare_m(mlp, m, target)
        if c is None:
            continue
        results[m] = c
        null = " (built-in null: no gradient)" if m == "1" and target == "aux" else ""
        print(f"m={m} {target}: same - cross accuracy = {fmt(c.effect)} [{fmt(c.lo)}, {fmt(c.hi)}], "
              f"Welch t = {fmt(c.statistic)}, p = {fmt(c.p)}, n = {c.n}{null}")  # fmt: skip
        same, cross = pooled(mlp, m, f"same-init/{target}"), pooled(mlp, m, f"cross-init/{target}")
        claims[m] = claim_check(same, cross, chance)
        k = claims[m]
        print(f"  claim at m={m}: same-init {fmt(k['same']['mean'])} [{fmt(k['same']['lo'])}, "
              f"{fmt(k['same']['hi'])}], cross-init {fmt(k['cross']['mean'])} "
              f"[{fmt(k['cross']['lo'])}, {fmt(k['cross']['hi'])}], chance {fmt(chance)} "
              f"+- {fmt(k['band'])}: {k['result']}")  # fmt: skip
    if not results:
        return Verdict(
            HYPOTHESIS,
            "not testable",
            reason=f"no m with same-init and cross-init/{target} students",
        )
    tested = [
        m for m in results if not (m == "1" and target == "aux") and np.isfinite(results[m].p)
    ]
    if tested:  # Holm step-down over the non-null m
        order = sorted(tested, key=lambda m: results[m].p)
        adj, running = {}, 0.0
        for i, m in enumerate(order):
            running = max(running, min(1.0, (len(order) - i) * results[m].p))
            adj[m] = running
        print("Holm-adjusted p: " + ", ".join(f"m={m}: {fmt(adj[m])}" for m in tested))
    if primary_m is not None and primary_m not in results:
        return Verdict(
            HYPOTHESIS, "not testable", reason=f"--m {primary_m}: no such m with both kinds"
        )
    primary = primary_m or (ms[-1] if ms[-1] in results else max(results, key=int))
    c, claim = results[primary], claims[primary]
    print(f"primary comparison: m={primary}, target {target}")
    welch_result = decide(c.lo, c.hi, +1)
    if welch_result == "not supported" or claim["result"] == "not supported":
        result = "not supported"
    elif welch_result == "supported" and claim["result"] == "supported":
        result = "supported"
    else:
        result = "inconclusive"
    reasons = []
    if welch_result != "supported":
        reasons.append(
            f"same - cross CI {'below' if welch_result == 'not supported' else 'contains'} 0"
        )
    if claim["result"] != "supported":
        reasons.append(f"claim check {claim['result']} (it needs the same-init CI above chance + "
                       f"{fmt(claim['band'])} and the cross-init CI within {fmt(claim['band'])} of chance)")  # fmt: skip
    reason = f"at m={primary}: " + "; ".join(reasons) if reasons else ""
    return from_comparison(HYPOTHESIS, c, result, reason)


def main(argv: list[str]) -> int:
    m, argv = pop_option(argv, "--m")
    return run_script(HYPOTHESIS, lambda runs: test(runs, m), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
