"""Hypothesis scripts over a whole sweep (a claim about how gamma moves across its points)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.hypothesis import Verdict, pop_option, verdict_of
from interp.store.verified import verify_run


def run_sweep_script(hypothesis: str, test: Callable[[Any, Path], Verdict], argv: list[str]) -> int:
    """`run_script` for claims over a whole sweep: argv is a sweep file (and `--out-dir D`, the
    parent of its folder, as `interp sweep` takes it); every finished point's stage files are
    checked against their manifests first. Always exits 0, the verdict last."""
    from interp.sweep.spec import load_sweep, sweep_root

    out_dir, argv = pop_option(argv, "--out-dir", None)

    def checked() -> Verdict:
        if len(argv) != 1:
            raise LookupError("give exactly one sweep file (and optionally --out-dir DIR)")
        sweep = load_sweep(argv[0])
        root = sweep_root(sweep, out_dir)
        if not root.is_dir():
            raise LookupError(f"{root} does not exist: run `interp sweep {argv[0]}` first")
        for p in sweep.points:
            if (root / "points" / p.name / "summary.json").is_file():
                verify_run(root / "points" / p.name)
        return test(sweep, root)

    return verdict_of(hypothesis, checked)
