"""Run a config file end to end: validate, run the experiment's stages, then the analyses and
the report the config asks for. The one place the suite's layers are chained (experiments
never import analyses or reports); `interp run` and `interp sweep` both come through here."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from interp.config import dumps_toml, to_dict
from interp.fmt import format_table

log = logging.getLogger("interp")


def open_run(
    path: str | Path, overrides: list[str] | None = None, out_dir: str | Path | None = None
) -> tuple[Any, Any, Any]:
    """(experiment, config, RunDir) of a config file: validated, "auto" resolved; nothing written
    beyond the run folder's `stages/`."""
    from interp.lm.models import resolved_names
    from interp.registry import load_experiment
    from interp.store.outputs import check_out_dir
    from interp.store.stages import RunDir

    path = Path(path)
    exp, cfg = load_experiment(path, overrides)
    root = Path(out_dir) if out_dir else path.parent
    check_out_dir(root / cfg.name, "the run folder")  # a file in the way: one line, before any mkdir
    device, dtype = resolved_names(getattr(cfg, "device", "auto"), getattr(cfg, "dtype", "float32"))
    resolve_autocasts(cfg, device)
    return exp, cfg, RunDir(root / cfg.name, seed=cfg.seed, device=device, dtype=dtype)


def resolve_autocasts(cfg: Any, device: str) -> None:
    """Every `autocast = "auto"` in the config (`[data]`, `[train]`) set to what this device runs
    ("bf16" with native bfloat16, else "off"), in place, so stage keys and the printed config hold
    what was used; an explicit "bf16" on a device that only emulates it gets a warning."""
    import torch

    from interp.lm.models import native_bf16, resolve_autocast

    dev = torch.device(device)
    for section in set_autocasts(cfg, resolve_autocast("auto", dev)):
        log.info("[%s] autocast = \"auto\" -> \"%s\" on %s", section, getattr(cfg, section).autocast, device)
    for section in ("data", "train"):
        if getattr(getattr(cfg, section, None), "autocast", None) == "bf16" and not native_bf16(dev):
            log.warning("[%s] autocast = \"bf16\" on %s without native bfloat16 (no avx512_bf16 or AMX): "
                        "emulated, ~6x slower than float32 here; autocast = \"auto\" uses float32 on such a "
                        "machine", section, device)  # fmt: skip


def set_autocasts(cfg: Any, value: str) -> list[str]:
    """Every `autocast = "auto"` in the config (`[data]`, `[train]`) set to `value`, in place;
    the sections changed."""
    changed = []
    for section in ("data", "train"):
        sub = getattr(cfg, section, None)
        if getattr(sub, "autocast", None) == "auto":
            object.__setattr__(sub, "autocast", value)
            changed.append(section)
    return changed


def run_config(
    path: str | Path, overrides: list[str] | None = None, out_dir: str | Path | None = None
) -> Path:
    """Run an experiment file end to end; returns the run directory."""
    from interp.lm.models import configure_threads
    from interp.registry import seed_everything
    from interp.store.runfolder import start_run, write_output
    from interp.store.stages import git_commit, package_versions

    path = Path(path)
    exp, cfg, run_dir = open_run(path, overrides, out_dir)
    resolved = dumps_toml(to_dict(cfg))
    print(f"# interp run {path} -> {run_dir.root}\n# resolved config\n{resolved}", flush=True)
    key = start_run(run_dir.root, resolved)
    threads = configure_threads()
    seed_everything(cfg.seed)
    t0 = time.time()
    summary = exp.run(cfg, run_dir)
    summary["config_key"] = key
    summary.setdefault("provenance", {}).update(
        {
            "config_file": str(path),
            "overrides": list(overrides or []),
            "seed": cfg.seed,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "threads": threads,
            "wall_s": round(time.time() - t0, 2),
            "stage_wall_s": dict(run_dir.timings),
            "stages_cached": list(run_dir.cached),
            "stages_computed": list(run_dir.computed),
            "stages_used": list(run_dir.used),
        }
    )
    # beside this run's config.toml: in superseded/ if another config took the folder meanwhile
    written = write_output(run_dir.root, resolved, "summary.json", summary)
    print("\n" + format_table(summary.get("table", [])), flush=True)
    print(f"\nsummary: {written} ({summary['provenance']['wall_s']:.0f}s)")
    if written.parent != run_dir.root:  # the folder is another config's now: analyses would read it
        log.warning("run %s: analysis and report skipped (the folder holds another config now)", cfg.name)
        return run_dir.root
    after_run(cfg, run_dir.root)
    return run_dir.root


def after_run(cfg: Any, root: Path) -> None:
    """Chain run -> analyze -> report as the config asks (`[analysis]` / `[report] enabled`).

    The only place the suite's layers are chained: experiments never import analyses or reports.
    """
    analysis = getattr(cfg, "analysis", None)
    if analysis is not None and analysis.enabled:
        from interp.analysis.run import analyze_run, print_analysis

        res = analyze_run(root, analysis)
        print("\n" + print_analysis(res) + f"\n\nanalysis: {root / 'analysis.json'}", flush=True)
    report = getattr(cfg, "report", None)
    if report is not None and report.enabled:
        from interp.extras import missing

        why = missing("reportlab")
        if why is not None:  # the run itself is done and its summary written: say so, do not fail
            log.warning("report skipped: %s", why)
            return
        from interp.report.build import report_main

        report_main([str(root)], None)
