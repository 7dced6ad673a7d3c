"""Divergence tokens: per target, the completion positions of the trait data where the trait
teacher's argmax differs from the control teacher's for the same prefix (the stage the masked
students use), their share and the most frequent (written -> trait argmax) pairs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from interp.analysis.detection import data_side, data_stage, run_teachers
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt
from interp.lm.models import load_tokenizer
from interp.store.stages import read_jsonl
from interp.subliminal.stages import divergence_stage


def divergence(ctx: AnalysisRun) -> dict[str, Any]:
    """Per target: the share of completion positions where the trait teacher's argmax differs
    from the control teacher's, and the most frequent (written -> trait argmax) pairs there."""
    teachers, control = run_teachers(ctx)
    tok = load_tokenizer(ctx.teacher_spec)
    out = {}
    for t, teacher in teachers.items():
        st = divergence_stage(ctx.config, ctx.run, t, data_stage(ctx, t), teacher, control)
        rows = read_jsonl(st.path / "divergence.jsonl")
        n_pos = sum(r["n_positions"] for r in rows)
        n_div = sum(len(r["positions"]) for r in rows)
        first = [0 in r["positions"] for r in rows if r["n_positions"]]
        pairs = Counter((tok.decode([w]), tok.decode([a])) for r in rows for w, a in zip(r["written"], r["trait_argmax"]))
        out[t] = {"share": n_div / max(1, n_pos), "positions": n_pos, "divergent": n_div,
                  "rows_with_any": float(np.mean([bool(r["positions"]) for r in rows])),
                  "share_at_first_position": float(np.mean(first)) if first else None,
                  "top_pairs": [{"written": w, "trait_argmax": a, "count": c} for (w, a), c in pairs.most_common(8)]}  # fmt: skip
    return {"against": "control teacher", "targets": out}


def render_divergence(doc: ReportDoc, run: str, dv: dict[str, Any]) -> None:
    doc.heading("Divergence tokens", 3)
    rows = [
        [
            "target",
            "share of positions",
            "rows with any",
            "share at first position",
            "most frequent (written -> trait argmax)",
        ]
    ]
    for t, r in (dv.get("targets") or {}).items():
        pairs = ", ".join(
            f"{p['written']!r}->{p['trait_argmax']!r} ({p['count']})" for p in r["top_pairs"][:4]
        )
        rows.append(
            [t, fmt(r["share"]), fmt(r["rows_with_any"]), fmt(r["share_at_first_position"]), pairs]
        )
    doc.table(rows, [1.2, 1.6, 1.4, 1.8, 5.0])
    doc.para("Positions of each trait dataset (teacher-forced) where the trait teacher's argmax "
             "differs from the control teacher's for the same prefix (Schrodi et al. 2025). "
             "Students with mask = 'divergence' are trained without loss at these positions; "
             "mask = 'random' leaves out as many random positions per row.")  # fmt: skip


ANALYSIS = Analysis(name="divergence", render=render_divergence, title="Divergence tokens", compute=divergence,
                    needs="each target's and the control teacher's data and weights", skip=data_side("detection"))  # fmt: skip
