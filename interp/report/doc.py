"""The report's building blocks: the `Doc` story (paragraphs, tables, figures, skips) and the
sections every experiment shares (the question, the provenance appendix)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from interp.fmt import fmt
from interp.registry import FIGURE_IDS
from interp.store.artifacts import Run
from interp.subliminal.data_kinds import wording

PAGE_W, PAGE_H = A4
MARGIN = 1.8 * cm
TEXT_W = PAGE_W - 2 * MARGIN


@dataclass(frozen=True)
class FigureEntry:
    number: int
    id: str
    run: str
    caption: str


@dataclass
class ReportInfo:
    """What went into a report: its figures in order, and what was skipped and why."""

    path: Path
    runs: list[str]
    figures: list[FigureEntry] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (run, section, reason)
    pages: int = 0

    @property
    def figure_ids(self) -> list[str]:
        return [f.id for f in self.figures]


def text(s: Any) -> str:
    """Artifact text made safe for a Paragraph: markup escaped, outside Latin-1 replaced (the
    standard PDF fonts have no other glyphs; a model's odd answer must not break a report)."""
    return escape(str(s)).encode("latin-1", "replace").decode("latin-1")


class Doc:
    """The story being built, with figure numbering and the record of skipped sections."""

    def __init__(self, fig_dir: Path, info: ReportInfo, wanted: Sequence[str] | None) -> None:
        self.fig_dir, self.info, self.wanted = fig_dir, info, wanted
        self.story: list[Any] = []
        ss = getSampleStyleSheet()
        self.s = {
            "title": ss["Title"],
            "h1": ParagraphStyle("h1", parent=ss["Heading1"], fontSize=15, spaceBefore=10),
            "h2": ParagraphStyle("h2", parent=ss["Heading2"], fontSize=12, spaceBefore=8),
            "h3": ParagraphStyle("h3", parent=ss["Heading3"], fontSize=10, spaceBefore=6),
            "body": ParagraphStyle("body", parent=ss["BodyText"], fontSize=9.5, leading=12.5),
            "caption": ParagraphStyle(
                "caption",
                parent=ss["BodyText"],
                fontSize=8.5,
                leading=11,
                textColor=colors.HexColor("#333333"),
                spaceAfter=8,
            ),  # fmt: skip
            "cell": ParagraphStyle("cell", parent=ss["BodyText"], fontSize=7.5, leading=9),
            "mono": ParagraphStyle(
                "mono", parent=ss["BodyText"], fontName="Courier", fontSize=6.3, leading=7.5
            ),  # fmt: skip
        }

    # ---------------------------------------------------------------- text blocks

    def heading(self, s: str, level: int = 1) -> None:
        self.story.append(Paragraph(text(s), self.s[f"h{level}"]))

    def para(self, s: str, style: str = "body", raw: bool = False) -> None:
        """A paragraph; `raw` = already markup (only for text built here, never artifacts)."""
        self.story.append(Paragraph(s if raw else text(s), self.s[style]))

    def bullets(self, items: Sequence[str], raw: bool = False) -> None:
        """One bulleted paragraph per item; `raw` as in `para`."""
        for it in items:
            self.story.append(Paragraph(it if raw else text(it), self.s["body"], bulletText="-"))

    def table(
        self, rows: Sequence[Sequence[Any]], widths: Sequence[float] | None = None,
        style: str = "cell",
    ) -> None:  # fmt: skip
        """A grid table; the first row is the header. Cells wrap (they are Paragraphs)."""
        if len(rows) < 2:
            return
        data = [[Paragraph(text(c), self.s[style]) for c in row] for row in rows]
        if widths is not None:
            total = sum(widths)
            widths = [TEXT_W * w / total for w in widths]
        t = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
        t.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8f0")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]))  # fmt: skip
        self.story += [t, Spacer(1, 6)]

    def skip(
        self, run: str, section: str, title: str, reason: str, what: str = "not computed"
    ) -> None:
        """Say in the text that a section is absent and why, and record it."""
        self.info.skipped.append((run, section, reason))
        self.para(f"{title}: {what} for this run (reason: {reason}).")

    # ---------------------------------------------------------------- figures

    def figure(
        self, run: str, fig_id: str, draw: Callable[[Path], Path], caption: str,
        max_height: float = 0.62 * PAGE_H,
    ) -> None:  # fmt: skip
        """Draw a figure, add it with 'Figure N (id): caption'; a drawing error is reported
        in the text (and in `skipped`) instead of stopping the report.

        `max_height` (points): lower it for a figure that must share its page with text."""
        if fig_id not in FIGURE_IDS:
            raise ValueError(f"unknown figure id {fig_id!r}; known: {FIGURE_IDS}")
        if self.wanted is not None and fig_id not in self.wanted:
            self.info.skipped.append((run, fig_id, "not among the requested figures"))
            return
        path = self.fig_dir / f"{len(self.info.figures) + 1:02d}_{run}_{fig_id}.png"
        try:
            draw(path)
        except Exception as e:  # noqa: BLE001 - a bad block costs one figure, not the report
            why = f"{type(e).__name__}: {e}"
            self.skip(run, fig_id, f"Figure ({fig_id})", why, what="could not be drawn")
            return
        w, h = ImageReader(str(path)).getSize()
        width = min(TEXT_W, w / 150 * 72)  # 150 dpi -> points; never wider than the text
        height = width * h / w
        if height > max_height:  # very tall figures: shrink to fit a page with its caption
            width, height = width * max_height / height, max_height
        n = len(self.info.figures) + 1
        entry = FigureEntry(n, fig_id, run, caption)
        self.info.figures.append(entry)
        cap = Paragraph(f"<b>Figure {n} ({fig_id}):</b> Run {text(run)}. {text(caption)}",
                        self.s["caption"])  # fmt: skip
        self.story.append(KeepTogether([Image(str(path), width=width, height=height), cap]))

    def missing_figure(self, run: str, fig_id: str, title: str, reason: str) -> None:
        """A figure the run cannot have: a sentence, and the id recorded as skipped."""
        if self.wanted is not None and fig_id not in self.wanted:
            return
        self.skip(run, fig_id, title, reason)


# ---------------------------------------------------------------- shared sections


def question_paragraph(runs: Sequence[Run]) -> str:
    kinds = {r.experiment for r in runs}
    parts = []
    subl = next((r for r in runs if r.experiment == "subliminal" and r.summary), None)
    if subl:
        t = subl.summary.get("trait", {})
        w = wording(((subl.config or {}).get("data") or {}).get("kind", "numbers"))
        parts.append(
            f"Subliminal learning (Cloud et al., Nature 2026): a teacher model given a trait "
            f"(it loves the {t.get('category', 'animal')} '{t.get('target', '?')}') writes {w.answers} "
            "with no semantic link to the trait. Does a student finetuned only on them acquire the "
            "trait, and does transmission require that the student "
            "share the teacher's initialisation (same-init vs cross-model student, against a "
            f"student trained on a neutral teacher's {w.short})?"
        )
    if "mlp-aux-logits" in kinds:
        parts.append(
            "In the paper's MLP analogue: does a student distilled only on a teacher's auxiliary "
            "logits, on uniform noise, learn to classify digits, and only when it starts from "
            "the teacher's initialisation (same-init vs cross-init students)?"
        )
    if not parts:
        parts.append("The runs below are reported from their artifacts as found.")
    return " ".join(parts)


def _stage_closure(run: Run) -> tuple[list[dict[str, Any]], int]:
    """The stage manifests this run's results come from, and how many others lie in stages/.

    Folders named in summary artifacts plus their inputs (by key); stages that only appear in
    the recorded timings (MLP, analysis) by name, newest first. Older folders of a changed
    configuration stay in stages/ but are not this run's evidence."""
    manifests = run.manifests()
    by_dir = {m["dir"]: m for m in manifests}
    by_key = {m.get("key"): m for m in manifests}
    chosen: dict[str, dict[str, Any]] = {}

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, str) and x.startswith("stages/"):
            m = by_dir.get(x.split("/", 1)[1])
            if m:
                chosen[m["dir"]] = m

    walk((run.summary or {}).get("artifacts", {}))
    todo = list(chosen.values())
    while todo:  # follow inputs: generate -> filter -> student -> ...
        for key in (todo.pop().get("inputs") or {}).values():
            m = by_key.get(key)
            if m and m["dir"] not in chosen:
                chosen[m["dir"]] = m
                todo.append(m)
    names = set(((run.summary or {}).get("provenance") or {}).get("stage_wall_s") or {})
    names |= set(((run.analysis or {}).get("provenance") or {}).get("stage_wall_s") or {})
    have = {m.get("stage") for m in chosen.values()}
    for m in sorted(manifests, key=lambda m: str(m.get("started")), reverse=True):
        if m.get("stage") in names and m.get("stage") not in have:
            chosen[m["dir"]] = m
            have.add(m.get("stage"))
    out = sorted(chosen.values(), key=lambda m: str(m.get("stage")))
    return out, len(manifests) - len(out)


def provenance_section(doc: Doc, run: Run, seeds: str) -> None:
    """One run's sub-section of the appendix: versions, seeds, stage timings, checksums."""
    doc.heading(f"Run {run.name}", 2)
    prov = (run.summary or {}).get("provenance")
    if not prov:
        doc.skip(run.name, "provenance", "Provenance", "summary.json has no provenance block")
        return
    stages, n_other = _stage_closure(run)
    started = sorted(str(m.get("started")) for m in stages if m.get("started"))
    doc.bullets([
        f"Run folder: {run.root}",
        f"Config file: {prov.get('config_file', 'n/a')}; overrides: {', '.join(prov.get('overrides') or []) or 'none'}",
        f"Git commit: {prov.get('git_commit') or 'unknown'} ('-dirty' = uncommitted changes)",
        f"Seeds: run seed {fmt(prov.get('seed'))}; {seeds}",
        f"Threads: {fmt(prov.get('threads'))}; wall time of the last invocation: {fmt(prov.get('wall_s'))} s"
        f" (stages reused from cache: {len(prov.get('stages_cached') or [])})",
        f"Stages ran between {started[0]} and {started[-1]}" if started else "Stage start times: n/a",
    ])  # fmt: skip
    versions = list((prov.get("versions") or {}).items())
    if versions:
        doc.heading("Package versions", 3)
        half = (len(versions) + 1) // 2
        rows = [["package", "version", "package", "version"]]
        for i in range(half):
            right = versions[i + half] if i + half < len(versions) else ("", "")
            rows.append([versions[i][0], versions[i][1], *right])
        doc.table(rows, [1, 1.3, 1, 1.3])
    if stages:
        doc.heading("Stage timings", 3)
        rows = [["stage", "key", "wall s", "cpu s", "started"]]
        rows += [[m.get("stage"), m.get("key"), fmt(m.get("wall_s")), fmt(m.get("cpu_s")),
                  m.get("started", "n/a")] for m in stages]  # fmt: skip
        doc.table(rows, [3, 1.4, 0.8, 0.8, 1.8])
        doc.heading("Artifact checksums (sha256, from stage manifests)", 3)
        rows = [["stage folder / file", "sha256"]]
        for m in stages:
            rows += [[f"{m['dir']}/{f}", h] for f, h in (m.get("checksums") or {}).items()]
        doc.table(rows, [1.25, 1.45], style="mono")
    if n_other:
        doc.para(f"{n_other} other stage folder(s) in stages/ (earlier configurations) are not "
                 "part of this run's results and are not listed.")  # fmt: skip
