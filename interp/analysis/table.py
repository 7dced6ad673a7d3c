"""The printed form of analysis.json: one comparison table (same-init vs control vs
cross-model, every metric with its CI) and a few lines for steering and the trait matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.fmt import fmt, fmt_est, format_table


def comparison_table(res: dict[str, Any], students: list[str]) -> list[dict[str, str]]:
    """Same-init vs control vs cross-model for every metric, with CIs."""
    rows = []

    def add(metric: str, get) -> None:
        row = {"metric": metric}
        for s in students:
            try:
                row[s] = get(s)
            except (KeyError, TypeError, IndexError):
                row[s] = "-"
        rows.append(row)

    ua = res.get("update_alignment", {}).get("students", {})
    add("update cos(dS, dT), mean over seeds", lambda s: fmt_est(ua[s]["overall"]))
    add("share of dS in span(dT) (chance)", lambda s: f"{fmt_est(ua[s]['span_share'])} ({fmt(ua[s]['span_share']['baseline'])})")
    ga = res.get("gradient_alignment", {}).get("datasets", {})
    add("gradient cos(-g, dT) per batch", lambda s: fmt_est(ga[s]["cos_ci"]))
    add("gradient batches with positive alignment", lambda s: f"{ga[s]['frac_positive']:.2f}")
    td = res.get("trait_direction", {}).get("students", {})

    def best(s: str) -> str:
        d = td[s]
        i = int(np.nanargmax(np.abs(d["cosine"])))
        return f"{d['cosine'][i]:.3f} [{d['lo'][i]:.3f}, {d['hi'][i]:.3f}] @L{d['layers'][i]}"

    add("direction cos(shift, v_T), max-|cos| layer", best)
    pr = res.get("probes", {}).get("students", {})
    bases = res.get("probes", {}).get("bases", {})

    def probe(s: str) -> str:
        spec = pr[s]["against"].split(":", 1)[1]
        layer = bases[spec]["best_layer"]
        return (
            f"{pr[s]['share_trait'][layer]:.2f} @L{layer} (AUROC {bases[spec]['auroc'][layer]:.2f})"
        )

    add("probe: share classified trait-bearing", probe)
    return rows


def print_analysis(res: dict[str, Any]) -> str:
    """The analysis as the CLI prints it: the comparison table, steering, trait-matrix mechanisms, what is missing."""
    lines = [format_table(res["table"])]
    st = res.get("steering", {})
    if st:
        s = st["sufficiency"]
        lines.append(
            f"steering L{st['layer']} x{st['scale']}: base {fmt_est(s['base'])} -> steered {fmt_est(s['steered'])}, diff {fmt_est(s['diff'])}"
        )
        if "necessity" in st:
            n = st["necessity"]
            lines.append(
                f"ablation ({n['student']}): {fmt_est(n['unablated'])} -> {fmt_est(n['ablated'])}, diff {fmt_est(n['diff'])}"
            )
            if "random_direction" in n:
                r = n["random_direction"]
                lines.append(
                    f"  random-direction control: -> {fmt_est(r['ablated'])}, diff {fmt_est(r['diff'])}"
                )
    lines += matrix_lines(res.get("matrix_mechanisms"))
    lines += entanglement_lines(res.get("entanglement"))
    lines += data_lines(res)
    for k, why in res.get("missing", {}).items():
        lines.append(f"{k}: not computed ({why})")
    return "\n".join(lines)


def matrix_lines(mm: dict[str, Any] | None) -> list[str]:
    """One line per arm of a trait-matrix run: direction and probe gamma (CI over seeds, label
    permutation p), and the same-init minus control cosine where the run has a control."""
    if not mm:
        return []
    out = [f"trait-matrix mechanisms at answer positions ({mm['n_rows']} held-out rows, mean over layers):"]
    for name, arm in mm["arms"].items():
        if arm.get("control"):
            out.append(f"  {name} (control): cos(shift, prompted - control-prompted) {fmt_est(arm['cos_vs_control_direction']['ci'])}")
            continue
        d, p = arm["direction"], arm["probe"]
        line = (f"  {name}: direction gamma {fmt_est(d['gamma_ci'])} p={fmt(d['p'])}; "
                f"probe gamma {fmt_est(p['gamma_ci'])} p={fmt(p['p'])}")  # fmt: skip
        if "same_init_minus_control" in arm:
            line += f"; own - control cos {fmt_est(arm['same_init_minus_control'])}"
        out.append(line)
    return out


def entanglement_lines(en: dict[str, Any] | None) -> list[str]:
    """Per target: the top entangled numbers and the subliminal-prompting difference."""
    if not en:
        return []
    out = ["token entanglement (numbers the trait prompt raises most, nats; prompting: p(target) loving them vs random numbers):"]
    for t, r in en["targets"].items():
        top = ", ".join(f"{x['number']} ({fmt(x['shift'])})" for x in r["entangled"]["top"])
        pr = r["prompting"]
        out.append(f"  {t}: {top}; prompting {fmt(pr['entangled'])} vs {fmt(pr['random'])}, diff {fmt_est(pr['diff'])}")
    return out


def data_lines(res: dict[str, Any]) -> list[str]:
    """The data-side sections: the controls table, divergence shares, detection AUROCs."""
    auc = lambda a: f"{fmt(a['auroc'])} [{fmt(a['lo'])}, {fmt(a['hi'])}]"  # noqa: E731
    out = []
    if res.get("data_controls"):
        out.append("data controls (gamma, nats; CI over seeds, or over questions in context):")
        for r in res["data_controls"]["rows"]:
            line = f"  {r['arm']} ({r['variant']}, seeds {r['seeds']}): gamma {fmt_est(r['gamma_ci'])} p={fmt(r['p_gamma'])}"
            if r.get("minus_unmodified"):
                line += f"; minus {r['minus_unmodified']['against']} {fmt_est(r['minus_unmodified'])} (over targets)"
            out.append(line)
    if res.get("divergence"):
        shares = ", ".join(f"{t} {fmt(r['share'])}" for t, r in res["divergence"]["targets"].items())
        out.append(f"divergence tokens (share of positions, trait vs control teacher argmax): {shares}")
    if res.get("detection"):
        out.append("detection AUROC, trait vs control data (classifier | judge | scan):")
        for t, r in res["detection"]["targets"].items():
            out.append(f"  {t}: {auc(r['classifier'])} | {auc(r['judge'])} | {auc(r['scan'])}")
    return out
