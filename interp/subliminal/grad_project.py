"""The gradient-projection defence's directions for a subliminal student (issue 30, item 4).

A student with `grad_project = "trait"` trains with the gradient at each decoder block's output
projected off that block's trait direction (`interp.lm.grad_project`). The direction is the one
its teacher (the one that labelled its data) moves the residual stream in on the student's own
training rows: per block, the mean over their answer tokens of resid_post(teacher, its prompt)
- resid_post(base, the student's prompt). A prompted teacher is the base under the target's
system prompt (as for the soft labels); a finetuned or steered one, its weights. Only training
rows are read, never evaluation questions. One cached stage per (teacher, rows): the seeds of
an arm that share their rows share it.

`grad_project = "trait-centred"` (prompted teachers, >= 2 targets) removes the part every
target's teacher shares: on the same rows, each target's prompted teacher gives its own v_l[t'],
and the direction is v_l[t] - mean over t' of v_l[t']. With system-prompt teachers the shared part
("a persona prompt is present") is most of v_l; the centred one is what tells the targets apart,
which is what gamma measures. `info.json` records both norms and the share of |v|^2 the mean
carries.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch

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

    centred = s.settings(cfg.train).grad_project == "trait-centred"
    others = [Variant(spec, system=cfg.trait.trait(t).system_prompt) for t in cfg.trait.target_list()] if centred else []
    if centred:
        params |= {"centred_over": [v.identity() for v in others]}

    def write(out: Path) -> None:
        t_model, tok = teacher.load(cfg.device, cfg.dtype)
        b_model, _ = Variant(spec).load(cfg.device, cfg.dtype)
        examples = _examples(tok, rows, teacher, None, default_system)
        v, info = answer_shift(t_model, b_model, tok, examples, completion_suffix(tok), batch_size=cfg.data.batch_size)
        if centred:  # every target's teacher (the same weights, its own prompt) on these rows
            plain = [{k: x for k, x in r.items() if k != "teacher_system"} for r in rows]
            mean = torch.stack([answer_shift(t_model, b_model, tok, _examples(tok, plain, o, None, default_system),
                                             completion_suffix(tok), batch_size=cfg.data.batch_size)[0]
                                for o in others]).mean(0)  # fmt: skip
            shared = (mean * v).sum(-1) ** 2 / (mean.norm(dim=-1) ** 2 * v.norm(dim=-1) ** 2).clamp_min(1e-30)
            info |= {"raw_norm_by_layer": info["norm_by_layer"], "mean_norm_by_layer": mean.norm(dim=-1).tolist(),
                     "cos2_raw_mean_by_layer": shared.tolist()}  # fmt: skip
            v = v - mean
            info["norm_by_layer"] = v.norm(dim=-1).tolist()
        save_directions(out / DIRECTIONS_FILE, v)
        write_json(out / "info.json", {**info, "teacher_system": teacher.system, "target": target, "centred": centred})
        del t_model, b_model
        gc.collect()

    return run.compute(f"grad-direction/{target}", params, write)

