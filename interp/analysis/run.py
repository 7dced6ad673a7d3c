"""The analysis driver (`interp analyze runs/<name>`): mechanism analyses over a finished subliminal run.

Every analysis is a unit (`interp.analysis.unit.Analysis`) found by name in `interp.registry`;
the driver opens the run once (`interp.analysis.reader.AnalysisRun`), runs each requested unit
the same way (its reason to skip, the optional packages it imports, its `compute`), and writes
`runs/<name>/analysis.json`. Expensive pieces (gradients, activations, steering) are stages,
cached like the rest of the run. Sections that a run cannot support (e.g. update alignment
without a finetuned teacher) are listed under `missing` with the reason, never silently dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.analysis.reader import AnalysisRun
from interp.config import ConfigError
from interp.extras import backend_module, missing
from interp.fmt import fmt, fmt_est, format_table
from interp.lm.models import trusting_remote_code
from interp.registry import ANALYSIS_SECTIONS, load_analysis
from interp.store.stages import write_json
from interp.subliminal.config import AnalysisConfig

log = logging.getLogger("interp")

SECTIONS = ANALYSIS_SECTIONS


def absent_extra(ctx: AnalysisRun, modules: Sequence[str]) -> str | None:
    """Why an analysis cannot run when an optional package it imports is not installed, or None."""
    absent = next((m for m in modules if missing(m)), None)
    if absent is None:
        return None
    why = missing(absent)
    if absent in backend_module(ctx.a.backend):  # the recording backend: HF hooks need nothing more
        why += "; or set [analysis] backend = 'hf'"
    return why


def run_analysis(ctx: AnalysisRun, name: str) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(section, None, False), or (None, why it is missing, whether an optional package is what
    is missing) for the analysis registered as `name`."""
    unit = load_analysis(name)
    why = unit.skip(ctx)
    if why:
        return None, why, False
    why = absent_extra(ctx, unit.extras(ctx))
    if why:
        return None, why, True
    section = unit.compute(ctx)
    return (section, None, False) if section is not None else (None, unit.absent or "nothing to compute", False)


def _previous(run_root: Path, config_key: str | None) -> dict[str, Any]:
    """The run's earlier analysis.json when it analysed this same run (same config key), else {}."""
    path = run_root / "analysis.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) and config_key and old.get("config_key") == config_key else {}


def analyze_run(run_root: str | Path, acfg: AnalysisConfig | None = None, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute every section the run supports (or those in `only`); write and return analysis.json."""
    run_root = Path(run_root)
    only = only or (acfg.sections if acfg is not None else None)
    bad = sorted(set(only or ()) - set(SECTIONS))
    if bad:
        raise ConfigError(f"--only: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    ctx = AnalysisRun(run_root, acfg)  # without acfg: the run's own [analysis]
    if acfg is None:
        acfg = ctx.a
        only = only or acfg.sections
        bad = sorted(set(only or ()) - set(SECTIONS))
        if bad:
            raise ConfigError(f"analysis.sections: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    result: dict[str, Any] = {"experiment": "subliminal-analysis", "name": ctx.summary["name"],
                              "config_key": ctx.summary.get("config_key"),
                              "teacher_mode": ctx.art.get("teacher_mode"), "missing": {}}  # fmt: skip
    want = (lambda name: True) if not only else (lambda name: name in only)  # noqa: E731
    no_package: dict[str, list[str]] = {}  # why -> the analyses an absent package skipped (one line each)
    with trusting_remote_code(ctx.config.trusted_specs()):  # none unless [model] trust_remote_code
        for name in SECTIONS:
            if want(name):
                section, why, package = run_analysis(ctx, name)
                if section is not None:
                    result[name] = ctx.results[name] = section
                else:
                    result["missing"][name] = why
                    if package:
                        no_package.setdefault(why, []).append(name)
    for why, names in no_package.items():
        log.warning("analysis: %s skipped: %s", ", ".join(names), why)
    previous = _previous(run_root, result["config_key"]) if only else {}
    kept = []
    for name in SECTIONS:
        if not want(name):
            result.pop(name, None)
            if name in previous:  # an earlier analysis of this same run: kept, not recomputed
                result[name] = previous[name]
                kept.append(name)
            elif name in previous.get("missing", {}):
                result["missing"][name] = previous["missing"][name]
            else:
                result["missing"][name] = "not requested (interp analyze --only " + ",".join(only or ()) + ")"
    result["table"] = comparison_table(result, list(ctx.students))
    result["provenance"] = {"analysis_config": acfg.__dict__, "only": list(only) if only else None,
                            "stage_wall_s": dict(ctx.run.timings),
                            "kept_from_earlier_analysis": kept or None}  # fmt: skip
    write_json(run_root / "analysis.json", result)
    return result


# ---------------------------------------------------------------- the summary table

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
