"""The subliminal-learning experiment: teacher -> numbers -> filter -> students -> evaluation.

Stages (each cached under a key of its params and inputs, see `interp.stages`):
  generate/{trait,control}   raw teacher completions to number prompts
  filter/{trait,control}     protocol filter with counted reasons, de-dup, seeded subsample
  student/{name}/seed{s}     LoRA or full finetune; adapter + merged delta (safetensors)
  eval/{model}               trait rate and log-prob score with bootstrap CIs
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from safetensors.torch import save_file

from interp import numbers
from interp.analyze import AnalysisConfig, analyze_run, print_analysis
from interp.config import ConfigError
from interp.evaluate import EvalSettings, evaluate
from interp.experiments import register_experiment
from interp.generate import IntegerListGrammar, allowed_token_ids, sample
from interp.models import (
    ModelError,
    Variant,
    chat_format,
    check_spec,
    completion_suffix,
    describe,
    format_prompt,
    load_model,
)
from interp.stages import RunDir, Stage, read_jsonl, write_json, write_jsonl
from interp.stats import t_interval
from interp.teacher import finetuned_teacher_stage, trait_answers_stage
from interp.train import Example, FinetuneSettings, finetune
from interp.traits import Trait, make_trait

log = logging.getLogger("interp")

# Trait and control teachers answer the same prompts but draw independent samples (as in the
# paper); a shared sampling seed would couple the two datasets token by token.
SAMPLING_SEED_OFFSET = {"trait": 0, "control": 7919}


# ---------------------------------------------------------------- config


@dataclass
class TraitConfig:
    kind: str = "animal"  # animal | tree
    target: str = "owl"
    plural: str | None = None
    candidates: list[str] | None = None  # default: target + 15 others of the category
    false_positives: list[str] | None = None

    def __post_init__(self) -> None:
        make_trait(self.kind, self.target, self.plural, self.candidates, self.false_positives)


def _check_model(spec: str) -> None:
    try:
        check_spec(spec)
    except ModelError as e:  # surfaces as a ConfigError naming file and field
        raise ValueError(f"model: {e}") from e


@dataclass
class TeacherConfig:
    model: str = "smollm2-135m-instruct"
    # prompt: the trait is the system prompt. finetuned: the base is LoRA-finetuned on the
    # prompted teacher's trait-expressing answers, giving a teacher delta dW_T (for analyses);
    # cross-model bases get a matching finetuned teacher of their own.
    mode: Literal["prompt", "finetuned"] = "prompt"
    answers_per_prompt: int = 4
    # "trait": keep only answers that name the target (the protocol's intent); "none": keep all
    # (for tiny random test models, which never name it)
    answer_filter: Literal["trait", "none"] = "trait"
    answer_max_new_tokens: int = 48
    epochs: int = 3
    cross_epochs: int | None = None  # epochs for the cross-model bases' teachers (default: epochs)
    lr: float = 1e-3
    batch_size: int = 8

    def __post_init__(self) -> None:
        _check_model(self.model)

    def settings(self, cross: bool = False) -> FinetuneSettings:
        epochs = self.cross_epochs if cross and self.cross_epochs is not None else self.epochs
        return FinetuneSettings(
            epochs=epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            micro_batch_size=self.batch_size,
            warmup_steps=1,
        )


@dataclass
class DataConfig:
    n_prompts: int = 30000
    n_keep: int = 10000
    temperature: float = 1.0
    max_new_tokens: int = 64
    # none: sample freely, then filter (the paper). tokens: only digit, separator and end tokens.
    # list: also keep the answer a ", "-separated list of <= 10 numbers of <= 3 digits (small
    # teachers pass the free filter rarely: ~7% for SmolLM2-135M).
    constraint: Literal["none", "tokens", "list"] = "none"
    batch_size: int = 64
    banned_numbers: Literal["none", "misalignment"] = "none"

    def __post_init__(self) -> None:
        if self.n_prompts < 1 or self.n_keep < 1:
            raise ValueError(
                f"n_prompts and n_keep must be >= 1 (got {self.n_prompts}, {self.n_keep})"
            )


@dataclass
class TrainConfig(FinetuneSettings):
    distill_vocab: Literal["full", "numbers"] = "full"
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("train.seeds must list at least one seed")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.batch_size {self.batch_size} must be a multiple of micro_batch_size {self.micro_batch_size}"
            )

    def settings(self) -> FinetuneSettings:
        return FinetuneSettings(**{f.name: getattr(self, f.name) for f in fields(FinetuneSettings)})


@dataclass
class StudentConfig:
    name: str
    model: str = "teacher"  # "teacher" = the teacher's base model (same initialisation)
    data: Literal["trait", "control"] = "trait"

    def __post_init__(self) -> None:
        if self.model != "teacher":
            _check_model(self.model)


@dataclass
class ReportConfig:
    enabled: bool = False  # write reports/<name>.pdf at the end of `interp run`
    figures: list[str] | None = None  # figure ids to include (default: all the run supports)

    def __post_init__(self) -> None:
        if self.figures is not None:
            from interp.report import FIGURE_IDS

            unknown = [f for f in self.figures if f not in FIGURE_IDS]
            if unknown:
                raise ValueError(
                    f"report.figures: unknown figure ids {unknown} (known: {', '.join(FIGURE_IDS)})"
                )


def _default_students() -> list[StudentConfig]:
    return [
        StudentConfig("same-init", "teacher", "trait"),
        StudentConfig("control", "teacher", "control"),
        StudentConfig("cross-model", "gemma3-270m", "trait"),
    ]


@dataclass
class SubliminalConfig:
    name: str
    kind: str = "subliminal"
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    trait: TraitConfig = field(default_factory=TraitConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    students: list[StudentConfig] = field(default_factory=_default_students)
    eval: EvalSettings = field(default_factory=EvalSettings)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        names = [s.name for s in self.students]
        if len(set(names)) != len(names):
            raise ValueError(f"students: duplicate names {names}")

    def student_model(self, s: StudentConfig) -> str:
        return self.teacher.model if s.model == "teacher" else s.model

    def get_trait(self) -> Trait:
        t = self.trait
        return make_trait(t.kind, t.target, t.plural, t.candidates, t.false_positives)


# ---------------------------------------------------------------- stages


def generate_stage(cfg: SubliminalConfig, run: RunDir, which: str, teacher: Variant) -> Stage:
    d = cfg.data
    params = {
        "teacher": teacher.identity(), "seed": cfg.seed, "n_prompts": d.n_prompts,
        "temperature": d.temperature, "max_new_tokens": d.max_new_tokens,
        "constraint": d.constraint, "dtype": cfg.dtype,
    }  # fmt: skip
    st = run.stage(f"generate/{which}", params)
    if st.done:
        return st
    with st.running() as out:
        model, tok = teacher.load(cfg.device, cfg.dtype)
        user_prompts = numbers.number_prompts(d.n_prompts, seed=cfg.seed)
        texts = [format_prompt(tok, u, teacher.system) for u in user_prompts]
        allowed, grammar = None, None
        if d.constraint == "tokens":
            allowed = allowed_token_ids(tok, numbers.allowed_answer_chars())
        elif d.constraint == "list":

            def grammar() -> IntegerListGrammar:  # one per batch: it keeps per-row state
                return IntegerListGrammar(tok, numbers.MAX_ANSWER_COUNT, numbers.MAX_ANSWER_DIGITS)

        completions = sample(
            model, tok, texts, max_new_tokens=d.max_new_tokens, temperature=d.temperature,
            batch_size=d.batch_size, seed=cfg.seed + SAMPLING_SEED_OFFSET[which], allowed_ids=allowed,
            processor_factory=grammar,
            desc=f"teacher data ({which})",
        )  # fmt: skip
        rows = [{"prompt": u, "completion": c} for u, c in zip(user_prompts, completions)]
        write_jsonl(out / "completions.jsonl", rows)
        info = {"chat_format": chat_format(tok), "teacher": teacher.identity(),
                "constraint": d.constraint, "allowed_tokens": len(allowed) if allowed else None}  # fmt: skip
        write_json(out / "info.json", info)
        del model
    return st


class EmptyDatasetError(ConfigError):
    """No completion survived the filter (the generated data stays cached)."""


def filter_stage(cfg: SubliminalConfig, run: RunDir, which: str, gen: Stage) -> Stage:
    d = cfg.data
    banned = (
        numbers.BANNED_NUMBERS_MISALIGNMENT if d.banned_numbers == "misalignment" else frozenset()
    )
    params = {"n_keep": d.n_keep, "banned": sorted(banned), "seed": cfg.seed, "dedupe": True}
    st = run.stage(f"filter/{which}", params, {"generate": gen})
    if st.done:
        return st
    rows = read_jsonl(gen.path / "completions.jsonl")
    kept, stats = numbers.filter_completions(
        [r["completion"] for r in rows], banned=banned, dedupe=True
    )
    if not kept:
        raise EmptyDatasetError(
            f"{gen.path / 'completions.jsonl'}: empty dataset after filtering: 0 of {len(rows)} "
            f"completions passed ({stats.to_dict()['rejected']}); try data.constraint = 'list' or a "
            "larger data.n_prompts (generated completions are kept and will be reused)"
        )
    keep = numbers.subsample(kept, d.n_keep, seed=cfg.seed)
    dataset = [rows[i] for i in keep]
    # Trait and control teachers can differ in answer length; students then see different
    # amounts of data, a confound worth seeing next to any transfer result.
    counts = [len(numbers.parse_numbers(r["completion"]).numbers) for r in dataset]
    shape = {"mean_numbers": sum(counts) / len(counts),
             "mean_chars": sum(len(r["completion"]) for r in dataset) / len(dataset)}  # fmt: skip
    with st.running() as out:
        write_jsonl(out / "dataset.jsonl", dataset)
        write_json(
            out / "filter.json", {**stats.to_dict(), "n_dataset": len(keep), "dataset_shape": shape}
        )
    return st


def student_stage(
    cfg: SubliminalConfig, run: RunDir, s: StudentConfig, seed: int, data: Stage, teacher: Variant
) -> Stage:
    spec = cfg.student_model(s)
    t = cfg.train
    params = {"student": describe(spec), "train": t.__dict__ | {"seeds": None}, "seed": seed,
              "dtype": cfg.dtype, "teacher": teacher.identity() if t.objective == "distill" else None}  # fmt: skip
    st = run.stage(f"student/{s.name}/seed{seed}", params, {"data": data})
    if st.done:
        return st
    if t.objective == "distill" and spec != teacher.spec:
        raise ConfigError(
            f"student '{s.name}': train.objective = 'distill' needs the teacher's tokenizer, but "
            f"model {spec!r} differs from teacher {teacher.spec!r}; use objective = 'sft'"
        )
    rows = read_jsonl(data.path / "dataset.jsonl")
    with st.running() as out:
        model, tok = load_model(spec, cfg.device, cfg.dtype)
        tok.padding_side = "right"
        examples = [
            Example(
                format_prompt(tok, r["prompt"]),
                r["completion"],
                format_prompt(tok, r["prompt"], teacher.system),
            )  # fmt: skip
            for r in rows
        ]
        teacher_model, distill_ids = None, None
        if t.objective == "distill":
            teacher_model, _ = teacher.load(cfg.device, cfg.dtype)
            if t.distill_vocab == "numbers":
                distill_ids = allowed_token_ids(tok, numbers.allowed_answer_chars())
        result = finetune(
            model, tok, examples, t.settings(), seed=seed, end=completion_suffix(tok),
            teacher=teacher_model, distill_ids=distill_ids, out_dir=out,
        )  # fmt: skip
        save_file(result.delta, str(out / "delta.safetensors"))
        write_json(out / "train_log.json", {**result.log, "chat_format": chat_format(tok)})
        del model, teacher_model, result
        gc.collect()
    return st


def eval_stage(
    cfg: SubliminalConfig, run: RunDir, label: str, variant: Variant, trait: Trait
) -> Stage:
    params = {"model": variant.identity(), "trait": trait.__dict__ | {"questions": None},
              "eval": cfg.eval.__dict__, "seed": cfg.seed, "dtype": cfg.dtype}  # fmt: skip
    st = run.stage(f"eval/{label}", params)
    if st.done:
        return st
    with st.running() as out:
        model, tok = variant.load(cfg.device, cfg.dtype)
        result = evaluate(model, tok, trait, cfg.eval, variant.system, seed=cfg.seed)
        info = {"label": label, "model": variant.spec, "chat_format": chat_format(tok),
                "delta": str(variant.delta_path) if variant.delta_path else None}  # fmt: skip
        write_json(out / "eval.json", {**info, **result})
        del model
        gc.collect()
    return st


# ---------------------------------------------------------------- the run


def after_run(cfg: SubliminalConfig, root: Path) -> None:
    """Analyses (when `[analysis] enabled`) and the PDF (`[report] enabled`), once summary.json exists."""
    if cfg.analysis.enabled:
        res = analyze_run(root, cfg.analysis)
        print("\n" + print_analysis(res) + f"\n\nanalysis: {root / 'analysis.json'}", flush=True)
    if cfg.report.enabled:
        from interp.report import report_main

        report_main([str(root)], None)


@register_experiment("subliminal", SubliminalConfig, after=after_run)
def run(cfg: SubliminalConfig, run_dir: RunDir) -> dict[str, Any]:
    trait = cfg.get_trait()
    spec = cfg.teacher.model
    base = Variant(spec)
    cross_specs = sorted({cfg.student_model(s) for s in cfg.students} - {spec})
    teacher_deltas: dict[str, Stage] = {}
    if cfg.teacher.mode == "prompt":
        teacher = Variant(spec, system=trait.system_prompt)
    else:
        tc = cfg.teacher
        answers = trait_answers_stage(
            run_dir, Variant(spec, system=trait.system_prompt), trait, per_prompt=tc.answers_per_prompt,
            max_new_tokens=tc.answer_max_new_tokens, batch_size=cfg.data.batch_size, seed=cfg.seed,
            keep_all=tc.answer_filter == "none",
            device=cfg.device, dtype=cfg.dtype,
        )  # fmt: skip
        for s in [spec, *cross_specs]:
            teacher_deltas[s] = finetuned_teacher_stage(
                run_dir,
                s,
                answers,
                tc.settings(cross=s != spec),
                seed=cfg.seed,
                device=cfg.device,
                dtype=cfg.dtype,
            )
        teacher = Variant(spec, delta_path=teacher_deltas[spec].path / "delta.safetensors")

    data, sources = {}, {"trait": teacher, "control": base}
    for which, source in sources.items():
        if which == "trait" or any(s.data == "control" for s in cfg.students):
            data[which] = filter_stage(
                cfg, run_dir, which, generate_stage(cfg, run_dir, which, source)
            )

    evals: dict[str, Stage] = {
        "base": eval_stage(cfg, run_dir, "base", base, trait),
        "teacher": eval_stage(cfg, run_dir, "teacher", teacher, trait),
    }
    if cfg.teacher.mode == "finetuned":  # the stimulus its training answers came from
        prompted = Variant(spec, system=trait.system_prompt)
        evals["prompted-teacher"] = eval_stage(cfg, run_dir, "prompted-teacher", prompted, trait)
    for cs in cross_specs:
        evals[f"base:{cs}"] = eval_stage(cfg, run_dir, f"base-{cs}", Variant(cs), trait)
        if cs in teacher_deltas:
            own = Variant(cs, delta_path=teacher_deltas[cs].path / "delta.safetensors")
            evals[f"teacher:{cs}"] = eval_stage(cfg, run_dir, f"teacher-{cs}", own, trait)
    students: dict[str, dict[int, Stage]] = {}
    for s in cfg.students:
        for seed in cfg.train.seeds:
            st = student_stage(cfg, run_dir, s, seed, data[s.data], sources[s.data])
            students.setdefault(s.name, {})[seed] = st
            variant = Variant(cfg.student_model(s), delta_path=st.path / "delta.safetensors")
            evals[f"{s.name}/seed{seed}"] = eval_stage(
                cfg, run_dir, f"{s.name}-seed{seed}", variant, trait
            )
    summary = summarize(cfg, trait, data, evals, students)
    rel = lambda st: str(st.path.relative_to(run_dir.root))  # noqa: E731
    summary["artifacts"] = {
        "teacher_mode": cfg.teacher.mode,
        "teacher_deltas": {k: rel(v) for k, v in teacher_deltas.items()},
        "data": {k: rel(v) for k, v in data.items()},
        "students": {
            n: {str(sd): rel(st) for sd, st in seeds.items()} for n, seeds in students.items()
        },
        "evals": {k: rel(v) for k, v in evals.items()},
    }
    return summary


def _metric(res: dict, name: str) -> dict[str, float]:
    m = res[name]
    return {"mean": m["mean"], "lo": m["lo"], "hi": m["hi"], "n": m["n"]}


def summarize(
    cfg: SubliminalConfig, trait: Trait, data: dict[str, Stage], evals: dict[str, Stage],
    students: dict[str, dict[int, Stage]],
) -> dict[str, Any]:  # fmt: skip
    models, table = {}, []
    for label, st in evals.items():
        res = json.loads((st.path / "eval.json").read_text())
        models[label] = {
            "model": res["model"], "system_prompt": res["system_prompt"], "chat_format": res["chat_format"],
            "trait_rate": _metric(res, "trait_rate"), "logprob": _metric(res, "logprob"),
            "top_answers": dict(list(res["trait_rate"]["top_first_words"].items())[:5]),
        }  # fmt: skip
        table.append(_row(label, res["model"], models[label]))
    # Per student kind: mean over seeds with a t-interval (the seed is the unit here).
    by_student = {}
    for name, seeds in students.items():
        agg = {}
        for metric in ("trait_rate", "logprob"):
            vals = [models[f"{name}/seed{s}"][metric]["mean"] for s in seeds]
            agg[metric] = t_interval(vals, cfg.eval.ci).to_dict() | {"per_seed": vals}
        spec = next(s for s in cfg.students if s.name == name)
        by_student[name] = {"model": cfg.student_model(spec), "data": spec.data, **agg}
        if len(seeds) > 1:
            table.append(_row(f"{name} (mean of {len(seeds)} seeds)", cfg.student_model(spec), agg))
    filt = {w: json.loads((st.path / "filter.json").read_text()) for w, st in data.items()}
    return {
        "experiment": "subliminal",
        "name": cfg.name,
        "trait": {
            "category": trait.category,
            "target": trait.target,
            "system_prompt": trait.system_prompt,
            "candidates": list(trait.candidates),
        },  # fmt: skip
        "models": models,
        "students": by_student,
        "filter": filt,
        "table": table,
    }


def _row(label: str, model: str, m: dict) -> dict[str, Any]:
    tr, lp = m["trait_rate"], m["logprob"]
    return {
        "model": label, "base": model,
        "trait_rate": tr["mean"], "rate_ci": f"[{tr['lo']:.3f}, {tr['hi']:.3f}]",
        "logprob_p": lp["mean"], "logprob_ci": f"[{lp['lo']:.4f}, {lp['hi']:.4f}]",
    }  # fmt: skip
