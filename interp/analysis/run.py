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

from interp.analysis.reader import AnalysisRun, load_summary
from interp.analysis.table import comparison_table
from interp.config import ConfigError, build
from interp.extras import backend_module, missing
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
    if acfg is None:
        summary_cfg = load_summary(run_root)[1]
        acfg = build(
            AnalysisConfig,
            summary_cfg.get("analysis", {}),
            source=str(run_root / "config.toml"),
            prefix="analysis",
        )
        only = only or acfg.sections
        bad = sorted(set(only or ()) - set(SECTIONS))
        if bad:
            raise ConfigError(f"analysis.sections: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    ctx = AnalysisRun(run_root, acfg)
    result: dict[str, Any] = {"experiment": "subliminal-analysis", "name": ctx.summary["name"],
                              "config_key": ctx.summary.get("config_key"),
                              "teacher_mode": ctx.art.get("teacher_mode"), "missing": {}}  # fmt: skip
    want = (lambda name: True) if not only else (lambda name: name in only)  # noqa: E731
    no_package: dict[str, list[str]] = {}  # why -> the analyses an absent package skipped (one line each)
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
