"""The shape of one analysis (as lm-eval's task is one unit): what it needs, why it may not run
on a given run, and a `compute` over the run's one reader (`interp.analysis.reader.AnalysisRun`).

A module declares its analysis as `ANALYSIS = Analysis(...)` (analyses that share work share it
through the reader, e.g. the recorded activations) and `interp.registry` lists it once by name
and module; `interp analyze`
(`interp.analysis.run`) discovers every analysis from that registry and runs it the same way:

1. `skip(run)`: a reason this run cannot support it (a setting off, no teacher delta, one
   target), or None;
2. `extras(run)`: the optional packages it imports (the activation backend, scikit-learn); an
   absent one is a reason naming the extra to install;
3. `compute(run)`: the section written to analysis.json under `name`; None means the run has
   nothing to compute it from, and `absent` says why;
4. `render(doc, run_name, section)`: its part of the PDF (`interp report`), tables and figures
   drawn from the section alone, through the report's document (`ReportDoc`, passed in: an
   analysis never imports the report).

A reason lands in analysis.json's `missing` (the report prints it where the section would be):
no section is silently dropped.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from interp.analysis.reader import AnalysisRun

# a source checkout: the hypothesis scripts (analyses/) sit beside the package
REPO_ROOT = Path(__file__).resolve().parents[2]


def _never(run: AnalysisRun) -> str | None:
    return None


def _nothing(run: AnalysisRun) -> tuple[str, ...]:
    return ()


class ReportDoc(Protocol):
    """What a renderer may do with the report (`interp.report.doc.Doc`)."""

    def heading(self, s: str, level: int = 1) -> None: ...
    def para(self, s: str, style: str = "body", raw: bool = False) -> None: ...
    def table(self, rows: Sequence[Sequence[Any]], widths: Sequence[float] | None = None,
              style: str = "cell") -> None: ...  # fmt: skip
    def figure(self, run: str, fig_id: str, draw: Callable[[Path], Path], caption: str,
               max_height: float = ...) -> None: ...  # fmt: skip
    def missing_figure(self, run: str, fig_id: str, title: str, reason: str) -> None: ...


@dataclass(frozen=True)
class Analysis:
    name: str  # its key in analysis.json and in [analysis] sections
    title: str  # its heading in the report
    compute: Callable[[AnalysisRun], dict[str, Any] | None]
    needs: str  # what it reads, in words (the artifacts: deltas, activations, checkpoints, ...)
    skip: Callable[[AnalysisRun], str | None] = _never
    extras: Callable[[AnalysisRun], tuple[str, ...]] = _nothing  # optional modules it imports
    absent: str = ""  # why, when `compute` returns None
    render: Callable[[ReportDoc, str, dict[str, Any]], None] | None = None
    # absent from analysis.json: the report says why (False: an opt-in or conditional table,
    # left out of the report without a word)
    report_when_absent: bool = True
    # the hypothesis script that tests this analysis's claim (analyses/<name>.py, whose
    # HYPOTHESIS is this name); the claim is the headline of its docstring (`claim()`)
    script: str = ""

    def claim(self) -> str | None:
        """The claim its hypothesis script tests, from the script's first docstring paragraph
        ("Hypothesis `name`: ..."); None without a script or outside a source checkout."""
        path = REPO_ROOT / self.script
        if not self.script or not path.is_file():
            return None
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        head = " ".join(doc.split("\n\n")[0].split())
        return head.split(": ", 1)[1] if head.startswith("Hypothesis `") and ": " in head else head or None


def off(flag: str) -> str:
    """The reason of an analysis switched off in the config."""
    return f"off; set [analysis] {flag} = true"


def figure_render(
    name: str, title: str, needed: str, draw: Callable[[dict[str, Any], Path], Path],
    caption: Callable[[dict[str, Any]], str],
) -> Callable[[ReportDoc, str, dict[str, Any]], None]:  # fmt: skip
    """The renderer of an analysis drawn as one figure (its id = its name): the figure with its
    caption, or, when the section's `needed` entry is empty, a sentence saying so."""

    def render(doc: ReportDoc, run: str, section: dict[str, Any]) -> None:
        if not section.get(needed):
            doc.missing_figure(run, name, title, f"no {needed}")
            return
        doc.figure(run, name, lambda p: draw(section, p), caption(section))

    return render
