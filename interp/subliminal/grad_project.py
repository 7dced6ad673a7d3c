"""The gradient-projection defence's directions for a subliminal student (issue 30, item 4).

A student with `grad_project = "trait"` trains with the gradient at each decoder block's output
projected off that block's trait direction (`interp.lm.grad_project`). The direction is the one
its teacher (the one that labelled its data) moves the residual stream in on the student's own
training rows: per block, the mean over their answer tokens of resid_post(teacher, its prompt)
- resid_post(base, the student's prompt). A prompted teacher is the base under the target's
system prompt (as for the soft labels); a finetuned or steered one, its weights. Only training
rows are read, never evaluation questions. One cached stage per (teacher, rows): the seeds of
an arm that share their rows share it.
"""

from __future__ import annotations

import gc
from pathlib import Path

from interp.lm.grad_project import DIRECTIONS_FILE, answer_shift, save_directions
from interp.lm.models import Variant, completion_suffix, describe
from interp.store.stages import RunDir, Stage, stable_hash, write_json
from interp.subliminal.config import StudentConfig, SubliminalConfig
from interp.subliminal.jobs import _examples


def direction_stage(cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, rows: list[dict],
                    teacher: Variant) -> Stage:  # fmt: skip
    """v [layer, d_model] of `teacher` against its base on `rows` (the student's training rows,
    each with its own teacher system prompt where it carries one), in `DIRECTIONS_FILE`, with
    its norms per layer in `info.json`."""
    spec = cfg.student_model(s)
    if spec != teacher.spec:  # (the config refuses this first; a caller that builds its own may not)
        raise ValueError(f"students: '{s.name}' grad_project needs the teacher's base; {spec!r} is not {teacher.spec!r}")
    default_system = s.settings(cfg.train).default_system_prompt
    params = {"teacher": teacher.identity(), "base": describe(spec), "default_system_prompt": default_system,
              "rows": stable_hash([[r["prompt"], r["completion"], r.get("teacher_system")] for r in rows]),
              "n_rows": len(rows), "dtype": cfg.dtype, "device": cfg.device}  # fmt: skip

    def write(out: Path) -> None:
        t_model, tok = teacher.load(cfg.device, cfg.dtype)
        b_model, _ = Variant(spec).load(cfg.device, cfg.dtype)
        examples = _examples(tok, rows, teacher, None, default_system)
        v, info = answer_shift(t_model, b_model, tok, examples, completion_suffix(tok), batch_size=cfg.data.batch_size)
        save_directions(out / DIRECTIONS_FILE, v)
        write_json(out / "info.json", {**info, "teacher_system": teacher.system, "target": target})
        del t_model, b_model
        gc.collect()

    return run.compute(f"grad-direction/{target}", params, write)

