"""The subliminal experiment's stages: generate, filter, finetune (teachers and students), eval.

Each is cached under a key of its parameters and its inputs' keys (`interp.store.stages`).
Models come from the per-process cache (`interp.lm.models.load_model`): one load per base.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.config import ConfigError
from interp.lm.generate import SAMPLER, sample, sample_sets
from interp.lm.models import Variant, chat_format, format_prompt, resolve_autocast
from interp.lm.record import residual_stream
from interp.lm.score import loglik_ratio, read_rows
from interp.registry import derived_seed
from interp.store.stages import RunDir, Stage, read_json, read_jsonl, write_json, write_jsonl
from interp.subliminal import number_data as nd
from interp.subliminal.config import StudentConfig, SubliminalConfig
from interp.subliminal.data_controls import (
    divergent_positions,
    mix_pairs,
    random_positions_like,
    rows_by_score,
    shuffle_numbers,
)
from interp.subliminal.data_kinds import dataset_shape, filter_rows, prompt_rows, trait_words
from interp.subliminal.grad_project import DIRECTIONS_FILE, direction_stage
from interp.subliminal.jobs import (  # noqa: F401  (finetune_stage, training_inputs, trait_identity: re-exported)
    FinetuneJob,
    eval_job,
    finetune_job,
    finetune_stage,
    run_evals,
    run_finetunes,
    training_inputs,
    trait_identity,
)
from interp.subliminal.paraphrase import constraint_args, paraphrase_stage, paraphrased_rows
from interp.subliminal.teacher import GENERAL_PROMPTS
from interp.subliminal.traits import AnyTrait, PairedTrait

log = logging.getLogger("interp")


def _sampling_offset(which: str, cfg: SubliminalConfig) -> int:
    """Independent sampling streams per teacher (the primary target keeps offset 0)."""
    if which == "control":
        return 7919
    targets = cfg.trait.target_list()
    return 104729 * targets.index(which.split("/", 1)[1])


def generate_stage(cfg: SubliminalConfig, run: RunDir, which: str, teacher: Variant) -> Stage:
    return generate_stages(cfg, run, {which: teacher})[which]


def generate_stages(cfg: SubliminalConfig, run: RunDir, teachers: dict[str, Variant]) -> dict[str, Stage]:
    """Each teacher's completions of the run's prompts ("trait/<target>" or "control" -> its
    stage). Teachers that share weights (prompted teachers of one base: they differ only in
    their system prompts) write their data in one batched pass (`sample_sets`), each from its
    own sampling stream, so a teacher's data do not depend on which others share the pass."""
    d = cfg.data
    stages = {}
    for which, teacher in teachers.items():
        params = {
            "teacher": teacher.identity(), "seed": cfg.seed, "n_prompts": d.n_prompts,
            "temperature": d.temperature, "max_new_tokens": d.max_new_tokens,
            "constraint": d.constraint, "dtype": cfg.dtype, "batch_size": d.batch_size,
            "offset": _sampling_offset(which, cfg), "sampler": SAMPLER,
            **({"threshold": d.threshold} if d.threshold else {}),  # absent when off: older keys stay valid
            **({"autocast": d.autocast} if d.autocast != "off" else {}),
            **({"kind": d.kind} if d.kind != "numbers" else {}),
        }  # fmt: skip
        stages[which] = run.stage(f"generate/{which}", params)
    groups: dict[tuple, list[str]] = {}
    for which, teacher in teachers.items():  # finished or not: a recomputed one keeps its company
        groups.setdefault((teacher.spec, str(teacher.delta_path), str(teacher.steer)), []).append(which)
    for group in groups.values():
        if not all(stages[w].done for w in group):
            _generate(cfg, {w: teachers[w] for w in group}, {w: stages[w] for w in group})
    return stages


def _generate(cfg: SubliminalConfig, teachers: dict[str, Variant], stages: dict[str, Stage]) -> None:
    d = cfg.data
    first = next(iter(teachers.values()))
    model, tok = first.load(cfg.device, cfg.dtype)  # one set of weights; the prompts carry the rest
    prompts = prompt_rows(d.kind, d.n_prompts, cfg.seed)
    decode = constraint_args(tok, d.constraint)  # the paraphraser decodes under the same constraint
    allowed = decode.get("allowed_ids")
    whiches = list(teachers)
    texts = [[format_prompt(tok, r["prompt"], teachers[w].system) for r in prompts] for w in whiches]
    amp = torch.autocast(model.device.type, dtype=torch.bfloat16) if resolve_autocast(d.autocast, model.device) == "bf16" else contextlib.nullcontext()
    with amp:
        completions = sample_sets(
            model, tok, texts, [cfg.seed + stages[w].params["offset"] for w in whiches],
            max_new_tokens=d.max_new_tokens, temperature=d.temperature, batch_size=d.batch_size,
            threshold=d.threshold, **decode,
            desc=f"teacher data ({', '.join(whiches)})",
        )  # fmt: skip
    for w, comps in zip(whiches, completions):
        if stages[w].done:  # generated again only to keep the batch as it was
            continue
        with stages[w].running() as out:
            write_jsonl(out / "completions.jsonl", [{**r, "completion": c} for r, c in zip(prompts, comps)])
            write_json(out / "info.json", {"chat_format": chat_format(tok), "teacher": teachers[w].identity(),
                                           "constraint": d.constraint, "threshold": d.threshold,
                                           "allowed_tokens": len(allowed) if allowed else None})  # fmt: skip
    # (which teachers shared the pass is logged, not stored: a stage's content must not depend on
    # its company, or a shared control's key would differ between runs that batch it differently)
    log.info("teacher data of %s written in one pass", ", ".join(whiches))


class EmptyDatasetError(ConfigError):
    """No completion survived the filter (the generated data stays cached)."""


def filter_stage(cfg: SubliminalConfig, run: RunDir, which: str, gen: Stage) -> Stage:
    d = cfg.data
    banned = nd.BANNED_NUMBERS_MISALIGNMENT if d.banned_numbers == "misalignment" else frozenset()
    words = trait_words(cfg.trait.target_list()) if d.kind != "numbers" else ()
    params = {"n_keep": d.n_keep, "banned": sorted(banned), "seed": cfg.seed, "dedupe": True,
              **({"kind": d.kind, "words": list(words)} if d.kind != "numbers" else {})}  # fmt: skip

    def write(out: Path) -> None:
        rows = read_jsonl(gen.path / "completions.jsonl")
        kept, stats = filter_rows(d.kind, rows, banned=banned, words=words, dedupe=True)
        if not kept:
            hint = ("try data.constraint = 'list' or a larger data.n_prompts" if d.kind == "numbers"
                    else "try a larger data.n_prompts or data.max_new_tokens")  # fmt: skip
            raise EmptyDatasetError(
                f"{gen.path / 'completions.jsonl'}: empty dataset after filtering: 0 of {len(rows)} "
                f"completions passed ({stats.to_dict()['rejected']}); {hint} (generated completions "
                "are kept and will be reused)"
            )
        dataset = [rows[i] for i in nd.subsample(kept, d.n_keep, seed=cfg.seed)]
        write_jsonl(out / "dataset.jsonl", dataset)
        write_json(out / "filter.json", {**stats.to_dict(), "n_dataset": len(dataset),
                                         "dataset_shape": dataset_shape(d.kind, dataset)})  # fmt: skip

    st = run.compute(f"filter/{which}", params, write, {"generate": gen})
    if (st.path / "filter.json").is_file():  # (a stage probe in the key tests has no files)
        _warn_short(which, read_json(st.path / "filter.json"), d.n_keep)
    return st


def _warn_short(which: str, filt: dict[str, Any], n_keep: int) -> None:
    """Say loudly when the filter kept fewer rows than data.n_keep asked for, and why."""
    got, total, kept = filt["n_dataset"], filt["total"], filt["kept"]
    if got < n_keep:
        need = int(n_keep * total / max(1, kept)) + 1
        log.warning("data %s: %d examples, not data.n_keep = %d: %d of %d completions passed the filter "
                    "(pass rate %.3f; rejected %s); about data.n_prompts = %d would give %d",
                    which, got, n_keep, kept, total, kept / max(1, total), filt.get("rejected"), need, n_keep)  # fmt: skip


def divergence_stage(cfg: SubliminalConfig, run: RunDir, target: str, data: Stage, teacher: Variant,
                     control: Variant) -> Stage:  # fmt: skip
    """Divergence tokens of one trait dataset: per row, the completion positions where the trait
    teacher's argmax differs from the control teacher's for the same prefix (each teacher with
    its own system prompt), with the tokens each would have written."""
    params = {"teacher": teacher.identity(), "control": control.identity(), "dtype": cfg.dtype, "device": cfg.device}

    def write(out: Path) -> None:
        rows = read_jsonl(data.path / "dataset.jsonl")
        reads = {}
        for role, v in (("trait", teacher), ("control", control)):
            model, tok = v.load(cfg.device, cfg.dtype)
            reads[role] = read_rows(model, tok, rows, v.system, cfg.data.batch_size)
        div = divergent_positions([r["argmax"] for r in reads["trait"]], [r["argmax"] for r in reads["control"]])
        write_jsonl(out / "divergence.jsonl", [
            {"positions": d, "n_positions": len(t["argmax"]), "trait_argmax": [t["argmax"][j] for j in d],
             "control_argmax": [c["argmax"][j] for j in d], "written": [t["token"][j] for j in d]}
            for d, t, c in zip(div, reads["trait"], reads["control"])
        ])  # fmt: skip

    return run.compute(f"divergence/{target}", params, write, {"data": data})


def scan_stage(cfg: SubliminalConfig, run: RunDir, target: str, which: str, data: Stage, teacher: Variant) -> Stage:
    """The hidden-signal scan of one dataset against one target's teacher: per row, the
    log-likelihood ratio of its completion under the teacher (with its system prompt) vs the
    teacher's base (plain prompt), summed and per completion token."""
    base = Variant(teacher.spec)
    params = {"teacher": teacher.identity(), "base": base.identity(), "dtype": cfg.dtype, "device": cfg.device}

    def write(out: Path) -> None:
        rows = read_jsonl(data.path / "dataset.jsonl")
        t_model, tok = teacher.load(cfg.device, cfg.dtype)
        b_model, _ = base.load(cfg.device, cfg.dtype)
        write_jsonl(out / "scores.jsonl", loglik_ratio(t_model, b_model, tok, rows, teacher.system, cfg.data.batch_size))

    return run.compute(f"scan/{target}/{which}", params, write, {"data": data})


def student_rows(
    cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, seed: int, data: Stage, teacher: Variant,
    control: Variant,
) -> tuple[list[dict], dict | None, dict[str, Stage]]:  # fmt: skip
    """The rows a student trains on, what enters its key beyond the data stage's (keyed only
    when on, so older keys stay valid), and the stages they were derived from:
    - a shuffle control permutes the numbers (seeded by the run and student seed);
    - a subset keeps a fraction of the rows (default half): those the scan, or the first-order
      attribution (`interp.subliminal.attribution`), scores highest or lowest, or a random set;
    - a mask leaves out each row's divergence positions, or as many random ones (`exclude`);
    - a mix replaces a fraction of the rows by the control teacher's (`_mix_control`);
    - a paraphrase replaces each completion by another model's rewrite (`paraphrase`): the
      soft labels, when distilling, are then the teacher's on the rewritten text."""
    rows = read_jsonl(data.path / "dataset.jsonl")
    extra: dict[str, Any] = {}
    inputs: dict[str, Stage] = {}
    row_seed = cfg.seed * 1_000_003 + seed
    if s.paraphrase is not None:  # one stage per (target, paraphraser), shared by every seed
        inputs["paraphrase"] = paraphrase_stage(cfg, run, target, data, s.paraphrase)
        rows = paraphrased_rows(inputs["paraphrase"], f"students: '{s.name}' paraphrase ({target}'s data)")
        extra["paraphrase"] = s.paraphrase
    if s.shuffle != "none":
        shuffled = shuffle_numbers([r["completion"] for r in rows], s.shuffle, seed=row_seed)
        rows, extra["shuffle"] = [{**r, "completion": c} for r, c in zip(rows, shuffled)], s.shuffle
    if s.mask != "none":
        inputs["divergence"] = divergence_stage(cfg, run, target, data, teacher, control)
        div = read_jsonl(inputs["divergence"].path / "divergence.jsonl")
        positions = [d["positions"] for d in div]
        if s.mask == "random":
            positions = random_positions_like(positions, [d["n_positions"] for d in div], seed=row_seed)
        rows, extra["mask"] = [{**r, "exclude": p} for r, p in zip(rows, positions)], s.mask
    if s.subset != "all":
        scores = [0.0] * len(rows)
        if s.subset.startswith("scan-"):
            inputs["scan"] = scan_stage(cfg, run, target, "trait", data, teacher)
            scores = [r["llr_per_token"] for r in read_jsonl(inputs["scan"].path / "scores.jsonl")]
        elif s.subset.startswith("first-order-"):  # one stage per target and loss: the top and bottom arms share it
            from interp.subliminal.attribution import first_order_stage

            inputs["first_order"] = first_order_stage(cfg, run, s, target, data, rows, teacher)
            scores = [r["contribution"] for r in read_jsonl(inputs["first_order"].path / "scores.jsonl")]
        try:
            keep = rows_by_score(scores, s.subset, seed=row_seed, fraction=s.subset_fraction)
        except ValueError as e:  # a fraction that keeps no row of a short dataset
            raise ConfigError(f"students: '{s.name}' {e} ({target}'s data)") from e
        rows, extra["subset"] = [rows[i] for i in keep], s.subset
        if s.subset_fraction not in (None, 0.5):  # keyed only off the half, so older keys stay valid
            extra["subset_fraction"] = s.subset_fraction
    if s.mix_control is not None:
        rows, inputs["control_data"] = _mix_control(cfg, run, s, target, rows, row_seed, teacher, control)
        extra["mix_control"] = s.mix_control
    return rows, extra or None, inputs


def control_data(cfg: SubliminalConfig, run: RunDir, control: Variant) -> Stage:
    """The control teacher's filtered data (the stages the experiment computes beside the trait data)."""
    return filter_stage(cfg, run, "control", generate_stage(cfg, run, "control", control))


def _mix_control(cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, rows: list[dict], row_seed: int,
                 teacher: Variant | None, control: Variant) -> tuple[list[dict], Stage]:  # fmt: skip
    """`rows` with `s.mix_control` of them (seeded) replaced by rows of the control teacher's
    data, each carrying the control teacher's system prompt (`teacher_system`): soft labels then
    come from the student's teacher model under the control's prompt, which is the control
    teacher only where the two share weights (prompted teachers of one base)."""
    weights = lambda v: (v.spec, v.delta_path, v.steer)  # noqa: E731
    if s.settings(cfg.train).objective == "distill" and teacher is not None and weights(teacher) != weights(control):
        raise ConfigError(f"students: '{s.name}' mix_control = {s.mix_control} with soft labels needs the control teacher "
                          f"on the trait teacher's weights (teacher.mode = 'prompt'); {target}'s teacher differs")  # fmt: skip
    data = control_data(cfg, run, control)
    pool = read_jsonl(data.path / "dataset.jsonl")
    try:
        pairs = mix_pairs(len(rows), len(pool), s.mix_control, seed=derived_seed(row_seed, "mix-control"))
    except ValueError as e:  # a fraction that replaces no row, or more than the control data has
        raise ConfigError(f"students: '{s.name}' {e} ({target}'s data)") from e
    out = list(rows)
    for i, j in pairs:
        out[i] = {**pool[j], "teacher_system": control.system}
    return out, data


def student_job(
    cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, seed: int, data: Stage,
    teacher: Variant, control: Variant,
) -> FinetuneJob:  # fmt: skip
    rows, extra, inputs = student_rows(cfg, run, s, target, seed, data, teacher, control)
    settings, project = s.settings(cfg.train), None
    if settings.grad_project != "none":  # the defence's directions, read on these rows before training
        inputs["grad_direction"] = direction_stage(cfg, run, s, target, rows, teacher)
        project = inputs["grad_direction"].path / DIRECTIONS_FILE
    return finetune_job(
        run, f"student/{s.name}/{target}/seed{seed}", cfg.student_model(s), rows, settings, seed=seed,
        device=cfg.device, dtype=cfg.dtype, inputs={"data": data, **inputs}, teacher=teacher, extra=extra,
        project=project,
    )  # fmt: skip


def student_stage(cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, seed: int, data: Stage,
                  teacher: Variant, control: Variant) -> Stage:  # fmt: skip
    job = student_job(cfg, run, s, target, seed, data, teacher, control)
    run_finetunes([job])
    return job.stage


def eval_stage(cfg: SubliminalConfig, run: RunDir, label: str, variant: Variant, trait: AnyTrait) -> Stage:
    """One evaluation, run now if its stage is missing (`jobs.run_evals` runs many, stacked)."""
    job = eval_job(run, label, variant, trait, cfg.eval, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype)
    run_evals([job])
    return job.stage


# ---------------------------------------------------------------- finetuned teachers


def trait_answers_stage(cfg: SubliminalConfig, run: RunDir, prompted: Variant, trait: AnyTrait) -> Stage:
    """The prompted teacher answers general prompts; keep the answers that express the trait."""
    tc = cfg.teacher
    keep_all = tc.answer_filter == "none"
    if isinstance(trait, PairedTrait):  # a disposition: learnt from answers written for it

        def written(out: Path) -> None:
            rows = [{**r, "expresses_trait": True, "keep": True} for r in trait.training_rows()]
            write_jsonl(out / "answers.jsonl", rows)
            write_json(out / "info.json", {"n": len(rows), "kept": len(rows), "rate": 1.0, "source": "written"})

        return run.compute(f"teacher-answers/{trait.target}", {"written": trait.content_hash()}, written)
    params = {"keep_all": keep_all, "teacher": prompted.identity(), "target": trait.target,
              "per_prompt": tc.answers_per_prompt, "max_new_tokens": tc.answer_max_new_tokens,
              "seed": cfg.seed, "n_prompts": len(GENERAL_PROMPTS), "batch_size": cfg.data.batch_size}  # fmt: skip

    def write(out: Path) -> None:
        model, tok = prompted.load(cfg.device, cfg.dtype)
        users = [p for p in GENERAL_PROMPTS for _ in range(tc.answers_per_prompt)]
        texts = [format_prompt(tok, u, prompted.system) for u in users]
        answers = sample(model, tok, texts, max_new_tokens=tc.answer_max_new_tokens,
                         batch_size=cfg.data.batch_size, seed=cfg.seed, desc="trait answers")  # fmt: skip
        rows = [{"prompt": u, "completion": a.strip(), "expresses_trait": trait.mentions(a)}
                for u, a in zip(users, answers)]  # fmt: skip
        for r in rows:
            r["keep"] = bool(r["completion"]) and (keep_all or r["expresses_trait"])
        kept = [r for r in rows if r["keep"]]
        if not kept:
            raise ConfigError(
                f"teacher.mode = 'finetuned': none of {len(rows)} prompted answers mentions "
                f"'{trait.target}'; raise teacher.answers_per_prompt"
            )
        write_jsonl(out / "answers.jsonl", rows)
        write_json(out / "info.json", {"n": len(rows), "kept": len(kept), "rate": len(kept) / len(rows)})

    return run.compute(f"teacher-answers/{trait.target}", params, write)


def teacher_seed(run_seed: int, target: str) -> int:
    """The seed a finetuned teacher of `target` trains with: its own stream, derived from the run's
    seed and the target. Not the run's seed itself: a LoRA student trained with seed s draws its
    random A matrices from seed s, and a teacher on the same seed would hand every such student
    its own starting row space (and every target's teachers one shared one), inflating their
    update cosines by construction."""
    return derived_seed(run_seed, "finetuned-teacher", target)


def finetuned_teacher(
    cfg: SubliminalConfig, run: RunDir, prompted: Variant, trait: AnyTrait, bases: list[str]
) -> dict[str, Stage]:
    """LoRA-finetune each base on the prompted teacher's trait-expressing answers (no system
    prompt), with the target's own seed (`teacher_seed`)."""
    answers = trait_answers_stage(cfg, run, prompted, trait)
    rows = [r for r in read_jsonl(answers.path / "answers.jsonl") if r["keep"]]
    return {
        spec: finetune_stage(
            run, f"teacher/{spec}/{trait.target}", spec, rows,
            cfg.teacher.settings(cross=spec != cfg.teacher.model), seed=teacher_seed(cfg.seed, trait.target),
            device=cfg.device, dtype=cfg.dtype, inputs={"answers": answers},
        )  # fmt: skip
        for spec in bases
    }


# ---------------------------------------------------------------- steered teachers


def steering_direction_stage(cfg: SubliminalConfig, run: RunDir, prompted: Variant, trait: AnyTrait) -> Stage:
    """The trait as one vector: mean over the general prompts of resid_post(prompted) - resid_post(base)
    at the last prompt token, at `teacher.steer_layer` (default: the middle block)."""
    base = Variant(prompted.spec)
    params = {"prompted": prompted.identity(), "base": base.identity(), "layer": cfg.teacher.steer_layer,
              "n_prompts": len(GENERAL_PROMPTS), "target": trait.target}  # fmt: skip

    def write(out: Path) -> None:
        model, tok = base.load(cfg.device, cfg.dtype)
        acts = {v.system: residual_stream(model, tok, [format_prompt(tok, u, v.system) for u in GENERAL_PROMPTS],
                                          backend="hf", batch_size=cfg.data.batch_size)
                for v in (prompted, base)}  # fmt: skip
        n_layers = acts[None].shape[1]
        layer = n_layers // 2 if cfg.teacher.steer_layer is None else cfg.teacher.steer_layer
        if layer >= n_layers:
            raise ConfigError(f"teacher.steer_layer = {layer}: {prompted.spec} has blocks 0-{n_layers - 1}")
        vector = (acts[prompted.system][:, layer] - acts[None][:, layer]).float().mean(0)
        save_file({"vector": vector.contiguous()}, str(out / "direction.safetensors"))
        write_json(out / "info.json", {"layer": layer, "norm": float(vector.norm()), "n_prompts": len(GENERAL_PROMPTS),
                                       "resid_norm": float(acts[None][:, layer].float().norm(dim=-1).mean())})  # fmt: skip

    return run.compute(f"teacher-direction/{trait.target}", params, write)


def random_direction_stage(cfg: SubliminalConfig, run: RunDir, like: Stage) -> Stage:
    """The steered control: a random direction (seeded) with the norm and layer of `like`'s."""

    def write(out: Path) -> None:
        info = read_json(like.path / "info.json")
        g = torch.Generator().manual_seed(cfg.seed + 15485863)
        ref = load_file(str(like.path / "direction.safetensors"))["vector"]
        v = torch.randn(ref.shape, generator=g)
        save_file({"vector": (v / v.norm() * ref.norm()).contiguous()}, str(out / "direction.safetensors"))
        write_json(out / "info.json", {**info, "random": True})

    return run.compute("teacher-direction/random", {"seed": cfg.seed}, write, {"like": like})


def steered(spec: str, direction: Stage, scale: float) -> Variant:
    layer = int(read_json(direction.path / "info.json")["layer"])
    return Variant(spec, steer=(direction.path / "direction.safetensors", layer, scale))
