"""Hypothesis `mlp_theorem`: in the MLP auxiliary-logit experiment, a student distilled only on
the teacher's auxiliary logits (on noise) learns to classify digits when it starts from the
teacher's initialisation, and does better than a student started from another seed's init.

Test: per m, held-out accuracy of same-init vs cross-init students (target "aux"; "all" if the
run has no aux students), Welch t-test and Welch CI of the difference over seeds. Per-seed
accuracies come from the students/m<m> stage's metrics.json (the stage whose parameters match
the resolved config); without it, the same test is computed from the summary's means, CIs and
counts (the t-interval gives back the standard deviation exactly). A paired t over teachers
(student i of both kinds imitates teacher i) is printed as a check. Several runs pool seeds.

Primary comparison (fixed before looking): the largest m of the sweep, where the paper's
effect is largest; m = 1 with aux targets is a built-in null (a softmax over one logit has no
gradient) and is only printed. Holm-adjusted p over the other m is printed too.
Verdict: "supported" if the primary CI lies above 0, "not supported" if below, else
"inconclusive"; "not testable" if no MLP run with both kinds is given.

Assumptions: seeds are independent (cross-init students reuse other seeds' inits, a mild
dependence Welch ignores); accuracy means over 25 seeds are close to normal.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from scipy import stats

from interp.verdict import (
    Comparison,
    Run,
    Verdict,
    decide,
    fmt,
    from_comparison,
    load_json,
    run_script,
    welch,
    welch_from_stats,
)

HYPOTHESIS = "mlp_theorem"


def stage_metrics(run: Run, m: str) -> dict[str, Any] | None:
    """metrics.json of the students/m<m> stage that this run's config produced (if unique)."""
    cfg = run.config or {}
    matches = []
    for p in sorted((run.root / "stages").glob(f"students__m{m}-*/manifest.json")):
        man, _ = load_json(p)
        par = (man or {}).get("params") or {}
        if str(par.get("m")) != m:
            continue
        want = {"seed": cfg.get("seed"), "student": cfg.get("student"), "model": cfg.get("model"),
                "data": cfg.get("data"), "n_models": (cfg.get("sweep") or {}).get("n_models")}  # fmt: skip
        if all(v is None or par.get(k) == v for k, v in want.items()):
            matches.append(p.parent)
    if len(matches) != 1:
        return None
    metrics, _ = load_json(matches[0] / "metrics.json")
    return metrics


def per_seed(run: Run, m: str, kind: str) -> list[float] | None:
    metrics = stage_metrics(run, m)
    acc = ((metrics or {}).get(kind) or {}).get("acc")
    return None if acc is None else [float(a) for a in acc if a is not None]


def _var_from_ci(est: dict[str, Any]) -> float:
    """Sample variance from a 95% t-interval over n seeds (how measure.ci95 built it)."""
    n = int(est["n"])
    if n < 2 or est["hi"] == est["lo"]:
        return 0.0
    sem = (est["hi"] - est["lo"]) / (2 * stats.t.ppf(0.975, n - 1))
    return float(sem**2 * n)


def compare_m(runs: list[Run], m: str, target: str) -> Comparison | None:
    same_k, cross_k = f"same-init/{target}", f"cross-init/{target}"
    a_all, b_all, stat_parts = [], [], []
    for run in runs:
        block = ((run.summary or {}).get("per_m") or {}).get(m) or {}
        if same_k not in block or cross_k not in block:
            continue
        a, b = per_seed(run, m, same_k), per_seed(run, m, cross_k)
        if a is not None and b is not None:
            a_all += a
            b_all += b
            if len(a) == len(b) and len(a) > 1 and np.std(np.subtract(a, b)) > 0:
                t, p = stats.ttest_rel(a, b)
                print(f"  {run.name} m={m}: paired over teachers t = {fmt(t)}, p = {fmt(p)}")
        else:
            stat_parts.append((block[same_k]["acc"], block[cross_k]["acc"]))
    if a_all and not stat_parts:
        return welch(a_all, b_all)
    if stat_parts and not a_all and len(stat_parts) == 1:
        (ea, eb), = stat_parts  # fmt: skip
        print(f"  m={m}: per-seed values not found; Welch from the summary's means and CIs")
        return welch_from_stats(ea["mean"], _var_from_ci(ea), ea["n"], eb["mean"], _var_from_ci(eb), eb["n"])  # fmt: skip
    if a_all:  # some runs without per-seed data: use the ones that have it, say so
        print(f"  m={m}: {len(stat_parts)} run(s) without per-seed data left out of the pool")
        return welch(a_all, b_all)
    return None


def test(runs: list[Run]) -> Verdict:
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
    for m in ms:
        c = compare_m(mlp, m, target)
        if c is None:
            continue
        results[m] = c
        null = " (built-in null: no gradient)" if m == "1" and target == "aux" else ""
        print(f"m={m} {target}: same - cross accuracy = {fmt(c.effect)} [{fmt(c.lo)}, {fmt(c.hi)}], "
              f"Welch t = {fmt(c.statistic)}, p = {fmt(c.p)}, n = {c.n}{null}")  # fmt: skip
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
    primary = ms[-1] if ms[-1] in results else max(results, key=int)
    c = results[primary]
    print(f"primary comparison: m={primary}, target {target}")
    result = decide(c.lo, c.hi, +1)
    reason = {"inconclusive": f"at m={primary} the CI contains 0 (or is undefined)",
              "not supported": f"at m={primary} cross-init students are more accurate"}.get(result, "")  # fmt: skip
    return from_comparison(HYPOTHESIS, c, result, reason)


if __name__ == "__main__":
    sys.exit(run_script(HYPOTHESIS, test, sys.argv[1:]))
