"""PDF reports from finished runs (`interp report RUN_DIR... [-o reports/<name>.pdf]`).

A report is built only from a run's artifacts (summary.json, config.toml, analysis.json,
stage manifests); it never recomputes an experiment. Layout: page 1 is the answer: title,
date, the question, then per subliminal run one line per contrast with its numbers and a
verdict, and the trait-matrix heatmap (`interp.report.answer`). Then per run: headline
numbers with CIs, methods from the resolved config, figures with captions ("Figure N (id):
..."). Last, "Appendix: provenance": per run, versions, commit, seeds, timings, checksums. A
section whose data the run lacks is replaced by a sentence saying so and why; building a
report never fails on missing analyses. Text is real PDF text (reportlab platypus, standard
fonts), so it can be searched and extracted.

Sections per experiment live in `interp.report.sections` (subliminal) and
`interp.report.mlp_sections`; each analysis renders its own part (`interp.analysis.unit`);
the run-level figures are in `interp.report.figures`.
"""

from __future__ import annotations

import datetime as dt
import io
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import cm
from reportlab.platypus import PageBreak, SimpleDocTemplate

from interp.registry import FIGURE_IDS
from interp.report.answer import answer_section
from interp.report.doc import (
    MARGIN,
    PAGE_W,
    Doc,
    ReportInfo,
    provenance_section,
    question_paragraph,
)
from interp.report.mlp_sections import mlp_run, mlp_seeds, other_run, other_seeds
from interp.report.sections import ci_level, subliminal_run, subliminal_seeds
from interp.store.artifacts import Run, load_run
from interp.store.stages import write_atomic

# experiment kind -> (its sections, the seeds line of its provenance)
LAYOUTS: dict[str, tuple[Callable[[Doc, Run], None], Callable[[Run], str]]] = {
    "subliminal": (subliminal_run, subliminal_seeds),
    "mlp-aux-logits": (mlp_run, mlp_seeds),
}

# ---------------------------------------------------------------- entry points


def _page_footer(canvas: Any, doc: Any) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7.5)
    canvas.drawRightString(PAGE_W - MARGIN, 1.0 * cm, f"interp report - page {doc.page}")
    canvas.restoreState()


def build_report(
    run_dirs: Sequence[str | Path], out_pdf: str | Path, config_figures: list[str] | None = None
) -> ReportInfo:
    """Write one PDF for one or several runs; returns what it contains and what it skipped.

    `config_figures`: figure ids to include (default: every figure the runs support)."""
    if config_figures is not None:
        unknown = sorted(set(config_figures) - set(FIGURE_IDS))
        if unknown:
            raise ValueError(f"unknown figure ids {unknown}; known: {list(FIGURE_IDS)}")
    runs = [load_run(d) for d in run_dirs]
    out_pdf = Path(out_pdf)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    info = ReportInfo(out_pdf, [r.name for r in runs])
    with tempfile.TemporaryDirectory(prefix="interp-report-") as tmp:
        doc = Doc(Path(tmp), info, config_figures)
        title = "Subliminal learning report: " + ", ".join(info.runs)
        doc.para(title, "title")
        doc.para(f"Built {dt.date.today().isoformat()} by interp report from the artifacts of "
                 f"{len(runs)} run(s): {', '.join(str(r.root) for r in runs)}.")  # fmt: skip
        doc.heading("Question", 1)
        doc.para(question_paragraph(runs))
        _answers(doc, runs)
        for run in runs:
            doc.heading(f"Run {run.name} ({run.experiment})", 1)
            if not run.root.is_dir():
                doc.skip(run.name, "run", f"Run {run.name}", f"{run.root} is not a directory")
                continue
            if run.summary is None:
                doc.skip(run.name, "run", f"Run {run.name}",
                         f"{run.problems.get('summary')}; the run is unfinished or was not run")  # fmt: skip
                continue
            LAYOUTS.get(run.experiment, (other_run, other_seeds))[0](doc, run)
        _appendix(doc, runs)
        buf = io.BytesIO()  # built in memory, written atomically: no half PDF after a kill
        pdf = SimpleDocTemplate(
            buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
            bottomMargin=MARGIN, title=title, author="interp", subject="interp report",
        )  # fmt: skip
        pdf.build(doc.story, onFirstPage=_page_footer, onLaterPages=_page_footer)
        write_atomic(out_pdf, buf.getvalue())
        info.pages = pdf.page
    return info


def _answers(doc: Doc, runs: Sequence[Run]) -> None:
    """Page 1 after the question: each finished subliminal run's contrasts and heatmap."""
    answered = [r for r in runs if r.experiment == "subliminal" and r.summary is not None]
    if not answered:
        return
    doc.heading("Answer", 1)
    for run in answered:
        answer_section(doc, run, ci_level(run), titled=len(answered) > 1)
    doc.story.append(PageBreak())  # the details start on a page of their own


def _appendix(doc: Doc, runs: Sequence[Run]) -> None:
    """Provenance of every run, after all results: what a reader audits, not what they read first."""
    doc.story.append(PageBreak())
    doc.heading("Appendix: provenance", 1)
    for run in runs:
        if run.summary is None:  # already said in its run section, and recorded as skipped
            doc.heading(f"Run {run.name}", 2)
            doc.para("No provenance: the run has no summary.json.")
            continue
        provenance_section(doc, run, LAYOUTS.get(run.experiment, (other_run, other_seeds))[1](run))


def default_report_path(run_dirs: Sequence[str | Path]) -> Path:
    """reports/<name>.pdf, relative to the current directory; several runs: names joined by +."""
    names = [Path(d).resolve().name for d in run_dirs]
    return Path("reports") / f"{'+'.join(names)}.pdf"


def configured_figures(run_dirs: Sequence[str | Path]) -> list[str] | None:
    """Figure ids named by the runs' `[report] figures` (their union), or None for all."""
    import tomllib

    named: list[str] = []
    for d in run_dirs:
        cfg_path = Path(d) / "config.toml"
        if cfg_path.exists():
            figs = (tomllib.loads(cfg_path.read_text()).get("report") or {}).get("figures")
            named += [f for f in figs or [] if f not in named]
    return named or None


def report_main(run_dirs: list[str], out: str | None) -> Path:
    """`interp report RUN_DIR... [-o PATH]`: build the report, print and return its path."""
    from interp.config import ConfigError
    from interp.store.outputs import check_output

    if not run_dirs:
        raise ConfigError("interp report: give at least one run directory")
    for d in run_dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"interp report: {d} is not a run directory")
    path = check_output(out or default_report_path(run_dirs), "the report (-o)", inputs=run_dirs, suffixes=(".pdf",))
    info = build_report(run_dirs, path, configured_figures(run_dirs))
    for run, section, reason in info.skipped:
        print(f"# {run}: {section} skipped ({reason})")
    print(path)
    return path
