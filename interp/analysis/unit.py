"""The shape of one analysis (as lm-eval's task is one unit): what it needs, why it may not run
on a given run, and a `compute` over the run's one reader (`interp.analysis.reader.AnalysisRun`).

A module declares its analysis as `ANALYSIS = Analysis(...)` (or several, sharing work, as
`ANALYSES = [...]`) and `interp.registry` lists it once by name and module; `interp analyze`
(`interp.analysis.run`) discovers every analysis from that registry and runs it the same way:

1. `skip(run)`: a reason this run cannot support it (a setting off, no teacher delta, one
   target), or None;
2. `extras(run)`: the optional packages it imports (the activation backend, scikit-learn); an
   absent one is a reason naming the extra to install;
3. `compute(run)`: the section written to analysis.json under `name`; None means the run has
   nothing to compute it from, and `absent` says why.

A reason lands in analysis.json's `missing` (the report prints it where the section would be):
no section is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.analysis.reader import AnalysisRun


def _never(run: AnalysisRun) -> str | None:
    return None


def _nothing(run: AnalysisRun) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Analysis:
    name: str  # its key in analysis.json and in [analysis] sections
    title: str  # its heading in the report
    compute: Callable[[AnalysisRun], dict[str, Any] | None]
    needs: str  # what it reads, in words (the artifacts: deltas, activations, checkpoints, ...)
    skip: Callable[[AnalysisRun], str | None] = _never
    extras: Callable[[AnalysisRun], tuple[str, ...]] = _nothing  # optional modules it imports
    absent: str = ""  # why, when `compute` returns None


def off(flag: str) -> str:
    """The reason of an analysis switched off in the config."""
    return f"off; set [analysis] {flag} = true"
