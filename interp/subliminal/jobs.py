"""Finetunes and evaluations as jobs, run in groups where they can share a forward pass.

A job is one stage (its key, lock, manifest and folder, as any stage) plus what computes it.
`run_finetunes` trains the jobs whose stages are missing: LoRA students of one base with equal
settings and row counts train together, stacked (`interp.lm.finetune.finetune_group`), the rest
one at a time. `run_evals` evaluates missing evaluations: LoRA students of one base are
evaluated stacked (`evaluate_many`). Grouping enters no key: stacked and one-at-a-time results
agree to float tolerance (tests/unit/test_stacked.py), and each stage stays its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.lm.delta import Delta
from interp.lm.finetune import (
    Example,
    FinetuneConfig,
    Member,
    finetune,
    finetune_group,
)
from interp.lm.loss import TEACHER_HIDDEN, Teacher
from interp.lm.models import (
    Variant,
    chat_format,
    completion_suffix,
    describe,
    format_prompt,
    load_model,
    resolve_device,
)
from interp.lm.settings import settings_key, stack_key, stack_rows_for
from interp.store.stages import RunDir, Stage, write_json
from interp.subliminal.evaluate import EvalConfig, evaluate, evaluate_many
from interp.subliminal.traits import AnyTrait, PairedTrait

log = logging.getLogger("interp")


# ---------------------------------------------------------------- finetunes


@dataclass
class FinetuneJob:
    """One finetune: its stage and what it trains on (`teacher`: the soft-label source, when distilling)."""

    stage: Stage
    spec: str
    rows: list[dict]
    settings: FinetuneConfig
    seed: int
    device: str
    dtype: str
    teacher: Variant | None = None
    project: Path | None = None  # the gradient projection's directions (settings.grad_project)


def finetune_job(
    run: RunDir, name: str, spec: str, rows: list[dict], settings: FinetuneConfig, *,
    seed: int, device: str, dtype: str, inputs: dict[str, Stage],
    teacher: Variant | None = None, extra: dict[str, Any] | None = None, project: Path | None = None,
) -> FinetuneJob:  # fmt: skip
    """The stage of one finetune (teachers and students alike: the delta and a log), not yet run.

    `rows` are prompt/completion pairs; `teacher` (with its own system prompt, delta and
    tokenizer) gives soft labels when `settings.objective == "distill"`.
    """
    distill = settings.objective == "distill"
    params = {"base": describe(spec), "train": settings_key(settings), "seed": seed, "dtype": dtype,
              "device": device, "teacher": teacher.identity() if distill and teacher else None, **(extra or {})}  # fmt: skip
    return FinetuneJob(run.stage(name, params, inputs), spec, rows, settings, seed, device, dtype,
                       teacher if distill else None, project)  # fmt: skip


def finetune_stage(run: RunDir, name: str, spec: str, rows: list[dict], settings: FinetuneConfig,
                   **kw: Any) -> Stage:  # fmt: skip
    """One finetune job, run now if its stage is missing (`finetune_job` takes the same arguments)."""
    job = finetune_job(run, name, spec, rows, settings, **kw)
    run_finetunes([job])
    return job.stage


def training_inputs(
    spec: str, rows: list[dict], teacher: Variant | None, device: str, dtype: str, default_system: bool = True
) -> tuple[Any, Any, list[Example], Teacher | None]:
    """What a finetune of `spec` on `rows` takes: the model (a private copy, free to change), its
    tokenizer, the examples (each prompt in the student's chat format and in the teacher's, with
    the teacher's system prompt; `exclude` as the loss mask) and the soft-label teacher (None
    for hard labels). `default_system=False`: the student's prompts without its chat template's
    own system prompt (`FinetuneConfig.default_system_prompt`)."""
    model, tok = load_model(spec, device, dtype)
    tok.padding_side = "right"
    soft = _soft_teacher(spec, teacher, device, dtype, {})
    return model, tok, _examples(tok, rows, teacher, soft, default_system), soft


def _soft_teacher(spec: str, teacher: Variant | None, device: str, dtype: str,
                  loaded: dict[tuple, Teacher]) -> Teacher | None:  # fmt: skip
    """The soft-label source of a student of `spec`; `loaded` shares teachers by their weights
    (prompted teachers of one base differ only in their prompts, which the examples carry)."""
    if teacher is None:
        return None
    weights = (teacher.spec, str(teacher.delta_path), str(teacher.steer))
    if weights not in loaded:
        t_model, t_tok = teacher.load(device, dtype)
        t_tok.padding_side = "right"
        loaded[weights] = Teacher(t_model, None if teacher.spec == spec else t_tok, completion_suffix(t_tok),
                                  key=json.dumps({k: v for k, v in teacher.identity().items() if k != "system_prompt"},
                                                 sort_keys=True, default=str))  # fmt: skip
    return loaded[weights]


def _examples(tok: Any, rows: list[dict], teacher: Variant | None, soft: Teacher | None,
              default_system: bool = True) -> list[Example]:  # fmt: skip
    fmt_t = soft.tok if soft is not None and soft.tok is not None else tok
    # a row may carry its own teacher system prompt: a control row mixed into trait data
    # (`stages._mix_control`) is labelled by the control teacher, the same weights under its prompt
    return [
        Example(format_prompt(tok, r["prompt"], default_system=default_system), r["completion"],
                format_prompt(fmt_t, r["prompt"], r.get("teacher_system", teacher.system) if teacher else None),
                tuple(r.get("exclude", ())))
        for r in rows
    ]  # fmt: skip


def run_finetunes(jobs: list[FinetuneJob]) -> None:
    """Compute every job whose stage is missing: stacked where they can be, else one by one.

    Groups are formed over all `jobs`, finished or not, so a student recomputed after a kill or
    a damaged file trains in the same company as it first did and comes out the same to the
    bit; the finished members of its group train again beside it, but only missing stages are
    written."""
    try:
        for group in _finetune_groups(jobs):
            if all(j.stage.done for j in group):
                continue
            if len(group) == 1:
                _train_alone(group[0])
            else:
                _train_stacked(group)
    finally:
        TEACHER_HIDDEN.clear()  # the teachers' forward passes, shared by every group of this batch


def _finetune_groups(jobs: list[FinetuneJob]) -> Iterator[list[FinetuneJob]]:
    """Jobs that can train stacked (one base, equal settings and step counts, one teacher
    tokenizer), in chunks of at most `stack_rows // micro_batch_size`; the rest alone.

    Chunks are cut seed by seed (a stable sort: the planned order within a seed), so seeds
    added after a finished run's last seed leave its full chunks as they were and train again at
    most its last, partly filled chunk per group (arms added to a multi-seed run still shift the
    later seeds' chunks); chunks still fill across seeds (a GPU stacks them all).
    Since session 18; a multi-seed run trained before keeps its results (grouping enters no
    key), but a stage of it recomputed now trains in other company: equal to tolerance, not
    to the bit in bf16."""
    groups: dict[Any, list[FinetuneJob]] = {}
    for i, j in enumerate(jobs):
        sk = stack_key(j.settings, str(resolve_device(j.device)))
        steps = -(-len(j.rows) // j.settings.batch_size)  # equal step counts stack (row counts may differ)
        key = (i,) if sk is None else (j.spec, sk, steps, j.teacher.spec if j.teacher else None, j.device, j.dtype)
        groups.setdefault(key, []).append(j)
    for group in groups.values():
        group.sort(key=lambda j: j.seed)
        j0 = group[0]
        size = max(1, stack_rows_for(j0.settings, str(resolve_device(j0.device))) // j0.settings.micro_batch_size)
        for a in range(0, len(group), size):
            yield group[a : a + size]


def _train_alone(job: FinetuneJob) -> None:
    with job.stage.running() as out:
        model, tok, examples, soft = training_inputs(job.spec, job.rows, job.teacher, job.device, job.dtype,
                                                     job.settings.default_system_prompt)  # fmt: skip
        result = finetune(model, tok, examples, job.settings, seed=job.seed, end=completion_suffix(tok),
                          teacher=soft, out_dir=out, project=_directions(job))  # fmt: skip
        result.delta.save(out / "delta.safetensors")
        write_json(out / "train_log.json", {**result.log, "chat_format": chat_format(tok)})


def _directions(job: FinetuneJob) -> Any:
    """[layer, d_model]: the directions a grad_project job's gradient is projected off, or None."""
    from interp.lm.grad_project import load_directions

    return None if job.project is None else load_directions(job.project)


def _train_stacked(group: list[FinetuneJob]) -> None:
    j0 = group[0]
    log.info("training %d students of %s stacked: %s", len(group), j0.spec, ", ".join(j.stage.name for j in group))
    model, tok = load_model(j0.spec, j0.device, j0.dtype)  # one copy of the base for all of them
    tok.padding_side = "right"
    teachers: dict[tuple, Teacher] = {}
    members = []
    for j in group:
        soft = _soft_teacher(j.spec, j.teacher, j.device, j.dtype, teachers)
        members.append(Member(_examples(tok, j.rows, j.teacher, soft, j.settings.default_system_prompt), j.seed, soft,
                              project=_directions(j)))  # fmt: skip
    t0 = time.time()
    with ExitStack() as stack:
        outs = [None if j.stage.done else stack.enter_context(j.stage.running()) for j in group]
        for m, out in zip(members, outs):
            m.out_dir = out
        results = finetune_group(model, tok, members, j0.settings, end=completion_suffix(tok))
        names = [j.stage.name for j in group]
        for j, r, out in zip(group, results, outs):
            if out is None:  # finished before (trained again only to keep the group as it was)
                continue
            r.delta.save(out / "delta.safetensors")
            # the company goes to the manifest's notes, not into the stage's content
            j.stage.notes["stacked"] = {**r.log.pop("stacked"), "with": names, "wall_s": round(time.time() - t0, 2)}
            write_json(out / "train_log.json", {**r.log, "chat_format": chat_format(tok)})


# ---------------------------------------------------------------- evaluations


@dataclass
class EvalJob:
    stage: Stage
    label: str
    variant: Variant
    trait: AnyTrait
    settings: EvalConfig
    seed: int
    device: str
    dtype: str
    student_seed: int = 0  # the training seed of the student evaluated (orders stacked chunks, enters no key)


def trait_identity(trait: AnyTrait) -> dict[str, Any]:
    """A trait in a stage key: its fields, and for a paired trait the hash of its written texts."""
    written = {"written": trait.content_hash()} if isinstance(trait, PairedTrait) else {}
    return trait.__dict__ | {"questions": None} | written


def eval_job(run: RunDir, label: str, variant: Variant, trait: AnyTrait, settings: EvalConfig, *, seed: int,
             device: str, dtype: str, student_seed: int = 0) -> EvalJob:  # fmt: skip
    params = {"model": variant.identity(), "trait": trait_identity(trait),
              "eval": settings.key(), "seed": seed, "dtype": dtype, "device": device}  # fmt: skip
    st = run.stage("eval/" + label.replace("/", "-").replace(":", "-"), params)  # one folder level
    return EvalJob(st, label, variant, trait, settings, seed, device, dtype, student_seed)


def run_evals(jobs: list[EvalJob]) -> None:
    """Compute every evaluation whose stage is missing; LoRA students of one base stacked."""
    for chunk in _eval_groups(jobs):
        if all(j.stage.done for j, _ in chunk):
            continue
        if len(chunk) == 1:
            _eval_alone(chunk[0][0])
        else:
            _eval_stacked(chunk)


def _eval_groups(jobs: list[EvalJob]) -> Iterator[list[tuple[EvalJob, Delta | None]]]:
    """Evaluations that can run stacked (LoRA students of one base, equal settings, eval seed and
    candidates), in chunks of at most `EvalConfig.stack`, each with its loaded delta; the rest alone.

    Formed over all `jobs`, finished or not, as for finetunes: a recomputed one keeps its company
    (a stacked sampling draws for the whole chunk). Chunks are cut in the order of the students'
    training seeds (stable), so seeds added after a finished run's last seed leave its full chunks
    as they were and evaluate again at most its last, partly filled chunk per group. Since session
    19; an evaluation of a multi-seed run recomputed now may sit in other company than it first
    did: its log-probs equal to tolerance, its sampled answers drawn anew."""
    groups: dict[Any, list[tuple[EvalJob, Delta | None]]] = {}
    for i, j in enumerate(jobs):  # all of them, as for finetunes: a recomputed one keeps its company
        key: Any = (i,)
        delta = None
        v = j.variant
        if v.delta_path is not None and v.system is None and v.steer is None and not isinstance(j.trait, PairedTrait):
            from interp.lm.stacked import stackable

            delta = Delta.load(v.delta_path)
            shape = stackable(delta)
            if shape is not None and j.settings.stack > 1:
                key = (v.spec, shape, json.dumps(j.settings.key(), sort_keys=True), j.seed, j.device, j.dtype,
                       tuple(j.trait.candidates))  # fmt: skip
        groups.setdefault(key, []).append((j, delta))
    for group in groups.values():
        group.sort(key=lambda jd: jd[0].student_seed)
        size = group[0][0].settings.stack
        for a in range(0, len(group), size):
            yield group[a : a + size]


def _info(j: EvalJob, tok: Any) -> dict[str, Any]:
    v = j.variant
    return {"label": j.label, "model": v.spec, "chat_format": chat_format(tok),
            "delta": str(v.delta_path) if v.delta_path else None}  # fmt: skip


def _eval_alone(j: EvalJob) -> None:
    with j.stage.running() as out:
        model, tok = j.variant.load(j.device, j.dtype)
        result = evaluate(model, tok, j.trait, j.settings, j.variant.system, seed=j.seed)
        write_json(out / "eval.json", {**_info(j, tok), **result})


def _eval_stacked(chunk: list[tuple[EvalJob, Delta]]) -> None:
    from interp.lm.stacked import stack_deltas

    j0 = chunk[0][0]
    log.info("evaluating %d students of %s stacked", len(chunk), j0.variant.spec)
    model, tok = load_model(j0.variant.spec, j0.device, j0.dtype)
    stacked = stack_deltas(model, [d for _, d in chunk])
    try:
        results = evaluate_many(model, tok, [j.trait for j, _ in chunk], j0.settings, seed=j0.seed)
    finally:
        stacked.detach()
    for (j, _), result in zip(chunk, results):
        if j.stage.done:
            continue
        with j.stage.running() as out:
            j.stage.notes["stacked"] = {"with": [c.stage.name for c, _ in chunk]}
            write_json(out / "eval.json", {**_info(j, tok), **result})

