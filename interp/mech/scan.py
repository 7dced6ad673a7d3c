"""`interp scan`: the hidden-signal scan on any JSONL of prompt/completion pairs.

Each row is scored by how much it carries the teacher: the log-likelihood ratio of its
completion under the teacher (a base with a system prompt and/or a delta) vs the same base
plain (`interp.lm.score.loglik_ratio`). With a control dataset, the AUROC of the scores at
telling the dataset's rows from the control's, with a bootstrap CI. Every input is checked
(files, rows, fields) before a model loads or a file is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interp.config import ConfigError
from interp.lm.models import Variant
from interp.lm.score import loglik_ratio
from interp.mech.detection import auroc_ci
from interp.store.stages import iter_jsonl, write_json, write_jsonl


def read_pairs(path: str | Path) -> list[dict[str, str]]:
    """Rows of a JSONL file, each with string fields "prompt" and "completion"; else one
    ConfigError naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (a JSONL of prompt/completion pairs)")
    rows = []
    for i, row in iter_jsonl(path):  # bad UTF-8 or JSON: one line naming file:line
        for field in ("prompt", "completion"):
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                got = type(row.get(field)).__name__ if isinstance(row, dict) else type(row).__name__
                raise ConfigError(f"{path}:{i}: field '{field}' must be a string (got {got})")
        rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return rows


def _outputs(out: str | Path | None, dataset: str | Path, control: str | Path | None,
             teacher: Variant) -> tuple[Path, Path]:  # fmt: skip
    """The scores file and its summary beside it, checked before a model loads: neither may
    replace an input, a run's record or a stage's file, nor a file an earlier scan did not write."""
    from interp.store.outputs import check_output

    inputs = (dataset, control, teacher.delta_path)
    out = check_output(out or Path(dataset).with_suffix(".scan.jsonl"), "the scores (--out)", inputs=inputs,
                       suffixes=(".jsonl",))  # fmt: skip
    summary = check_output(out.with_suffix(".summary.json"), "the scan summary", inputs=inputs, suffixes=(".json",))
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: folder {out.parent} does not exist (--out)")
    if out.exists() and not summary.exists():
        raise ConfigError(f"{out}: refusing to write the scores (--out) here: it exists and is not an earlier "
                          f"scan's output (no {summary.name} beside it)")  # fmt: skip
    return out, summary


def scan_dataset(dataset: str | Path, teacher: Variant, control: str | Path | None = None,
                 out: str | Path | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Score `dataset` (and `control`) against `teacher`; write `<out>` (default
    `<dataset>.scan.jsonl`, one score row per input row) and `<out>.summary.json`."""
    if teacher.system is None and teacher.delta_path is None and teacher.steer is None:
        raise ConfigError("scan: the teacher is its own base (give --system and/or --delta): every score would be 0")
    if teacher.delta_path is not None and not Path(teacher.delta_path).is_file():
        raise ConfigError(f"{teacher.delta_path}: no such delta file (--delta)")
    rows = read_pairs(dataset)
    ctrl = read_pairs(control) if control is not None else None
    out, summary_path = _outputs(out, dataset, control, teacher)
    t_model, tok = teacher.load(device, dtype)
    b_model, _ = Variant(teacher.spec).load(device, dtype)
    scores = loglik_ratio(t_model, b_model, tok, rows, teacher.system, batch_size)
    summary: dict[str, Any] = {"dataset": str(dataset), "teacher": teacher.identity(), "n": len(rows),
                               "score": "log p_teacher - log p_base of the completion, per token",
                               "mean_llr_per_token": float(np.mean([s["llr_per_token"] for s in scores]))}  # fmt: skip
    if ctrl is not None:
        c_scores = loglik_ratio(t_model, b_model, tok, ctrl, teacher.system, batch_size)
        summary |= {"control": str(control), "n_control": len(ctrl),
                    "mean_llr_per_token_control": float(np.mean([s["llr_per_token"] for s in c_scores])),
                    "auroc": auroc_ci([s["llr_per_token"] for s in scores], [s["llr_per_token"] for s in c_scores],
                                      n_boot=n_boot, seed=seed)}  # fmt: skip
    write_jsonl(out, [{**r, **s} for r, s in zip(rows, scores)])
    write_json(summary_path, summary)
    summary["out"] = str(out)
    return summary
