"""The `kind = "subliminal"` config: traits (one target or a matrix of them), teacher, data, students."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Annotated, Literal

from interp.config import (
    Device,
    LearningRate,
    NonNegFloat,
    NonNegInt,
    PosInt,
    Range,
    SafeName,
    Seed,
    Temperature,
    UnitFloat,
)
from interp.lm.finetune import FinetuneConfig
from interp.lm.models import ModelError, check_spec
from interp.subliminal.data_controls import subset_size
from interp.subliminal.evaluate import EvalConfig
from interp.subliminal.traits import DEFAULT_CANDIDATES, AnyTrait, make_trait

log = logging.getLogger("interp")

# A control teacher "treated the same way without the trait": a neutral system prompt of about
# the stimulus's length and shape, so control students move about as far as trait students.
NEUTRAL_PROMPT = (
    "You are a careful assistant. You think about each request all the time. Clear answers "
    "are your favorite kind of answer. Imbue your answers with your care for the user."
)


@dataclass
class TraitConfig:
    kind: str = "animal"  # animal | tree | misalignment (target "misaligned": scored on written answer pairs)
    target: str = "owl"
    # The trait matrix: one teacher (and its students) per target, every student scored on
    # every target. When set it replaces `target`; its first entry is the primary target (the
    # one the mechanism analyses study).
    targets: list[str] | None = None
    plural: str | None = None  # only with a single target
    candidates: list[str] | None = None  # default: the targets, then the category's others (16)
    false_positives: list[str] | None = None

    def __post_init__(self) -> None:
        if self.targets is not None and not self.targets:
            raise ValueError("trait.targets is an empty list; give one or more targets, or drop it for trait.target")
        ts = self.target_list()
        if len(set(ts)) != len(ts):
            raise ValueError(f"trait.targets has duplicates: {ts}")
        if self.kind == "misalignment" and len(ts) != 1:
            raise ValueError(f"trait kind 'misalignment' has one target, 'misaligned' (got {ts}); it has no trait matrix")
        if self.targets is not None and self.plural is not None and len(ts) > 1:
            raise ValueError("trait.plural applies to a single target; drop it with trait.targets")
        for t in ts:
            self.trait(t)  # raises ValueError naming the bad target or candidate list

    def target_list(self) -> list[str]:
        return [t.strip().lower() for t in (self.targets or [self.target])]  # the form make_trait keeps

    def candidate_list(self) -> list[str]:
        if self.candidates is not None:
            return [c.strip().lower() for c in self.candidates]
        ts = self.target_list()
        others = [c for c in DEFAULT_CANDIDATES.get(self.kind, ()) if c not in ts]
        return ts + others[: max(0, 16 - len(ts))]

    def trait(self, target: str) -> AnyTrait:
        """One target's trait, scored over the run's common candidate list (same order for all)."""
        plural = self.plural if len(self.target_list()) == 1 else None
        return make_trait(self.kind, target, plural, self.candidate_list(), self.false_positives)


def _check_model(spec: str) -> None:
    try:
        check_spec(spec)
    except ModelError as e:  # surfaces as a ConfigError naming file and field
        raise ValueError(f"model: {e}") from e


@dataclass
class TeacherConfig:
    model: str = "smollm2-135m-instruct"
    # prompt: the trait is the system prompt (distilling it is context distillation).
    # finetuned: the base is LoRA-finetuned on the prompted teacher's trait-expressing
    # answers, giving a teacher delta dW_T (for analyses); cross-model bases get their own.
    # steered: the base with a steering vector added at `steer_layer` while it writes and
    # labels data: the mean difference of resid_post between the prompted and the plain base at
    # the last token of the general prompts (never the evaluation questions), x `steer_scale`.
    mode: Literal["prompt", "finetuned", "steered"] = "prompt"
    # Who writes (and, for soft labels, labels) the control data: the base with no system
    # prompt ("none", the paper's control), with a neutral prompt of similar length
    # ("neutral"; soft-label control students then move as far as trait students), or, for
    # steered teachers, steered by a random direction of the primary direction's norm ("random").
    control: Literal["none", "neutral", "random"] = "none"
    steer_layer: NonNegInt | None = None  # default: the middle block
    steer_scale: Annotated[float, Range(-100, 100)] = 1.0
    answers_per_prompt: PosInt = 4
    # "trait": keep only answers that name the target (the protocol's intent); "none": keep all
    # (for tiny random test models, which never name it)
    answer_filter: Literal["trait", "none"] = "trait"
    answer_max_new_tokens: PosInt = 48
    epochs: PosInt = 3
    cross_epochs: PosInt | None = None  # epochs for the cross-model bases' teachers (default: epochs)
    lr: LearningRate = 1e-3
    batch_size: PosInt = 8

    def __post_init__(self) -> None:
        _check_model(self.model)
        if self.control == "random" and self.mode != "steered":
            raise ValueError("teacher.control = 'random' (a random steering direction) needs mode = 'steered'")

    def settings(self, cross: bool = False) -> FinetuneConfig:
        epochs = self.cross_epochs if cross and self.cross_epochs is not None else self.epochs
        return FinetuneConfig(
            epochs=epochs, lr=self.lr, batch_size=self.batch_size,
            micro_batch_size=self.batch_size, warmup_steps=1,
        )  # fmt: skip


@dataclass
class DataConfig:
    # what the teacher writes: number lists (the paper's main data), short Python functions for
    # generated programming tasks, or step-by-step solutions of generated arithmetic word problems
    # (interp.subliminal.number_data / code_data / cot_data, each with its prompts and filter)
    kind: Literal["numbers", "code", "cot"] = "numbers"
    n_prompts: PosInt = 30000
    n_keep: PosInt = 10000
    temperature: Temperature = 1.0
    max_new_tokens: PosInt = 64
    # none: sample freely, then filter (the paper). tokens: only digit, separator and end tokens.
    # list: also keep the answer a ", "-separated list of <= 10 numbers of <= 3 digits (small
    # teachers pass the free filter rarely: ~7% for SmolLM2-135M).
    constraint: Literal["none", "tokens", "list"] = "none"
    batch_size: PosInt = 64
    banned_numbers: Literal["none", "misalignment"] = "none"
    # threshold sampling (the entanglement paper's defence, Zur et al. 2025): while the teacher
    # writes, tokens whose probability (after temperature and the constraint) is below this are
    # never sampled (transformers' epsilon_cutoff); 0 = off
    threshold: UnitFloat = 0.0
    # the teachers write under bfloat16 autocast: ~2x faster on a CPU with avx512_bf16 (~6x
    # slower without it); their sampling distribution moves by bf16 rounding (the soft labels are
    # computed apart, in the run's dtype); "auto" as in [train] autocast
    autocast: Literal["off", "bf16", "auto"] = "off"

    def __post_init__(self) -> None:
        if self.n_prompts < 1 or self.n_keep < 1:
            raise ValueError(
                f"n_prompts and n_keep must be >= 1 (got {self.n_prompts}, {self.n_keep})"
            )
        if self.kind != "numbers":
            number_only = [f"{k} = {v!r}" for k, v, off in (("constraint", self.constraint, "none"),
                           ("banned_numbers", self.banned_numbers, "none")) if v != off]  # fmt: skip
            if number_only:
                raise ValueError(f"{number_only[0]} applies to number data only (data.kind = '{self.kind}' samples freely)")


@dataclass
class TrainConfig(FinetuneConfig):
    """Defaults for every student (each `[[students]]` entry may override the objective)."""

    seeds: list[Seed] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seeds:
            raise ValueError("train.seeds must list at least one seed")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.batch_size {self.batch_size} must be a multiple of micro_batch_size {self.micro_batch_size}"
            )


# The per-student overrides of [train]: one run holds the hard-label and soft-label arms.
STUDENT_OVERRIDES = ("objective", "distill_vocab", "method", "lr", "epochs", "lora_r", "lora_alpha",
                     "target_modules", "optimizer", "momentum", "layers", "checkpoint_every",
                     "default_system_prompt", "kl_base", "grad_project")  # fmt: skip


@dataclass
class StudentConfig:
    name: SafeName
    model: str = "teacher"  # "teacher" = the teacher's base model (same initialisation)
    data: Literal["trait", "control"] = "trait"
    objective: Literal["sft", "distill"] | None = None  # None: [train]'s
    distill_vocab: Literal["full", "numbers"] | None = None
    method: Literal["lora", "full"] | None = None
    lr: LearningRate | None = None
    epochs: PosInt | None = None
    lora_r: PosInt | None = None
    lora_alpha: PosInt | None = None
    target_modules: list[str] | None = None
    optimizer: Literal["adamw", "sgd", "signsgd"] | None = None
    momentum: UnitFloat | None = None
    layers: list[NonNegInt] | None = None  # decoder blocks that train (see FinetuneConfig.layers)
    checkpoint_every: NonNegInt | None = None  # save the LoRA factors every N steps (trajectories)
    default_system_prompt: bool | None = None  # train with the template's own system prompt (FinetuneConfig)
    kl_base: NonNegFloat | None = None  # the KL-to-base penalty's weight (FinetuneConfig.kl_base; a defence)
    # gradient projection off the trait direction (FinetuneConfig.grad_project; a defence): the
    # directions are the teacher's residual shift on this student's rows (interp.subliminal.grad_project)
    # "trait-centred": minus the mean of every target's teacher's shift on the same rows (prompted
    # teachers), so the part all teachers share (a persona prompt is present) is not what is removed
    grad_project: Literal["none", "trait", "trait-centred"] | None = None
    # mixing in unbiased data (a defence): this fraction of the student's trait rows replaced by
    # rows of the control teacher's data (same row count, seeded per seed); soft labels for those
    # rows come from the control teacher (its system prompt on the trait teacher's weights)
    mix_control: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] | None = None
    # paraphrasing (a defence): each row's completion rewritten by this model ("base": the teacher's
    # base, no system prompt; or any model spec), asked for the same numbers in the same order and
    # decoded under data.constraint; rewrites failing the number filter dropped (interp.subliminal.paraphrase)
    paraphrase: str | None = None
    # the paper's shuffle controls on this student's data: numbers permuted within each
    # response, or dealt across responses from one shuffled pool (formats and counts kept)
    shuffle: Literal["none", "within", "across"] = "none"
    # a loss mask over the completion tokens (Schrodi et al. 2025): "divergence" leaves out the
    # positions where the trait teacher's argmax differs from the control teacher's for the same
    # prefix; "random" leaves out as many positions per row, drawn at random (its control)
    mask: Literal["none", "divergence", "random"] = "none"
    # which rows train: all; the half the hidden-signal scan scores lowest (teacher-vs-base
    # log-likelihood ratio per token, the filtering defence); or a random half (its control).
    # Per-example attribution: the top or bottom `subset_fraction` of the rows by that score,
    # or a random fraction (its control); scan-low = scan-bottom and random-half = random at one half;
    # first-order-top/-bottom: by each row's share of the first step's change in the target's
    # log-odds on the unscored questions (interp.subliminal.attribution)
    subset: Literal["all", "scan-low", "random-half", "scan-top", "scan-bottom", "random", "first-order-top",
                    "first-order-bottom"] = "all"
    subset_fraction: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] | None = None  # None: one half
    seeds: list[Seed] | None = None  # None: [train]'s (e.g. one seed for a costly control arm)

    def __post_init__(self) -> None:
        if self.model != "teacher":
            _check_model(self.model)
        if self.seeds is not None and not self.seeds:
            raise ValueError(f"students: '{self.name}' seeds must list at least one seed, or be left out")
        needs_trait = [k for k, v in (("mask", self.mask != "none"), ("subset", self.subset != "all")) if v]
        if needs_trait and self.data != "trait":
            raise ValueError(f"students: '{self.name}' sets {needs_trait[0]}, which applies to trait data only (data = 'trait')")
        clash = [f"{k} = '{v}'" for k, v, off in (("data", self.data, "trait"), ("shuffle", self.shuffle, "none"),
                                                  ("mask", self.mask, "none")) if v != off]  # fmt: skip
        if self.mix_control is not None and clash:
            raise ValueError(f"students: '{self.name}' mix_control = {self.mix_control} applies to trait data, not with {clash[0]}")
        if self.paraphrase is not None:
            _check_paraphrase(self)
        if self.subset_fraction is not None and self.subset in ("all", "scan-low", "random-half"):
            raise ValueError(f"students: '{self.name}' subset_fraction = {self.subset_fraction} needs subset = 'scan-top', "
                             f"'scan-bottom', 'first-order-top', 'first-order-bottom' or 'random' (subset = '{self.subset}' keeps all rows or one half)")
        if self.mask != "none" and self.model != "teacher":
            raise ValueError(
                f"students: '{self.name}' mask = '{self.mask}' needs the teacher's tokenizer (model = 'teacher'): "
                "divergence positions are the teacher's token positions"
            )

    def settings(self, train: TrainConfig) -> FinetuneConfig:
        base = {f.name: getattr(train, f.name) for f in fields(FinetuneConfig)}
        over = {k: getattr(self, k) for k in STUDENT_OVERRIDES if getattr(self, k) is not None}
        return FinetuneConfig(**(base | over))


def _check_paraphrase(s: StudentConfig) -> None:
    """A paraphrased student's other data settings: the rewrite replaces the rows, so settings
    read from the original rows (positions, scores, the row count) do not apply."""
    on = [f"{k} = {v!r}" for k, v, off in (("mix_control", s.mix_control, None), ("subset", s.subset, "all"),
                                           ("shuffle", s.shuffle, "none"), ("mask", s.mask, "none")) if v != off]  # fmt: skip
    if on:
        raise ValueError(f"students: '{s.name}' paraphrase = {s.paraphrase!r} rewrites the rows; it does not combine with {on[0]}")
    if not s.paraphrase.strip():
        raise ValueError(f"students: '{s.name}' paraphrase is empty; name a model, or 'base' (the teacher's base model)")
    if s.paraphrase != "base":
        try:
            check_spec(s.paraphrase)
        except ModelError as e:
            raise ValueError(f"students: '{s.name}' paraphrase: {e} (or 'base': the teacher's base model)") from e


def _default_students() -> list[StudentConfig]:
    return [
        StudentConfig("same-init", "teacher", "trait"),
        StudentConfig("control", "teacher", "control"),
        StudentConfig("cross-model", "gemma3-270m", "trait"),
    ]


@dataclass
class AnalysisConfig:
    """The `[analysis]` table of a subliminal config."""

    enabled: bool = False  # also run at the end of `interp run`
    # which sections `interp analyze` computes (None: every one the run supports); `--only` overrides
    sections: list[str] | None = None
    # the student entries the trait-matrix mechanisms read (None: every one; a base's control
    # students are read with its arms), e.g. the transmitting arm alone
    arms: list[str] | None = None
    backend: Literal["hf", "transformer_lens", "nnsight"] = "transformer_lens"
    n_prompts: Annotated[int, Range(2)] = 50  # evaluation questions used for activations (trait direction, probes)
    n_number_prompts: NonNegInt = 16  # number prompts also recorded (stored for notebooks)
    n_answer_rows: Annotated[int, Range(10)] = 64  # trait-matrix runs: held-out number rows read at their answer tokens
    entanglement: bool = False  # token entanglement and subliminal prompting (interp.mech.entanglement)
    entangle_prompts: Annotated[int, Range(2)] = 16  # held-out number prompts over which 0..999 are scored
    entangle_top_k: Annotated[int, Range(1, 100)] = 5  # entangled numbers reported and used for prompting
    # the paper's data controls and detection (interp.mech.detection, .incontext): divergence
    # tokens, a classifier, the model as judge, the hidden-signal scan; each needs the control data
    detection: bool = False
    judge_trials: Annotated[int, Range(4)] = 32  # dataset pairs shown to the judge, per target
    judge_rows: Annotated[int, Range(1, 50)] = 8  # rows of each dataset in one judge prompt
    incontext: bool = False  # the trait data as k in-context examples to the base, no finetuning
    incontext_k: list[PosInt] = field(default_factory=lambda: [4, 16, 64])  # capped by the data and the context
    # students with checkpoints (checkpoint_every) read back at every step (interp.analysis.trajectories)
    trajectories: bool = False
    # the theorem's first-step prediction of every trait arm's shifts (interp.analysis.first_order):
    # one imitation gradient per target on this many of its training rows
    first_order: bool = False
    first_order_rows: PosInt = 16
    # trait-matrix runs: each trait arm's students re-scored with their activation shift ablated
    # along their teacher's direction (interp.analysis.shift_ablation); per student, this many
    # single layers spread over depth + 3 scorings (own, other-target, random at all layers)
    shift_ablation: bool = False
    shift_ablation_layers: NonNegInt = 4
    # trait-matrix runs: what each trait arm (defences included) costs the task, its students' KL
    # to their teachers on the held-out answer rows against the base's and the unmodified arm's
    # (interp.analysis.task_loss; one forward per student)
    task_loss: bool = False
    # trait-matrix runs: the base steered at one layer (`sufficiency_layers` spread over depth) by
    # alpha (each of `sufficiency_scales`, multiples of the raw teacher-minus-base vector) times each
    # target's teacher direction, and by a covariance-drawn control of the same norm
    # (interp.analysis.steer_sufficiency); per target, 1 + 2 x layers x scales scorings, each
    # also sampled for the trait rate when `sufficiency_rate`
    steer_sufficiency: bool = False
    sufficiency_layers: PosInt = 3
    sufficiency_scales: list[Annotated[float, Range(-1000, 1000)]] = field(default_factory=lambda: [1.0, 4.0, 16.0])
    sufficiency_rate: bool = True
    # replicates of that measurement, each with its own draw of the held-out number rows the
    # directions are estimated on, its own random control and its own sampling seed (none: the
    # run's seed alone); with >= 2, each cell adds its gamma per seed and intervals over seeds
    sufficiency_seeds: list[NonNegInt] | None = None
    # each trait student's update split along its finetuned teacher's top-`subspace_rank` singular
    # subspace, each part scored alone (interp.analysis.weight_split; ~6 scorings per student)
    weight_split: bool = False
    gradient_batches: PosInt = 4
    gradient_batch_size: PosInt = 8
    subspace_rank: NonNegInt = 8  # 0 skips principal angles
    n_boot: Annotated[int, Range(10)] = 1000
    steering_scale: Annotated[float, Range(-100, 100)] = 1.0  # multiples of the mean-difference vector added at the best layer
    batch_size: PosInt = 16

    def __post_init__(self) -> None:
        from interp.registry import ANALYSIS_SECTIONS

        bad = [x for x in self.sections or () if x not in ANALYSIS_SECTIONS]
        if bad:
            raise ValueError(f"analysis.sections: unknown {bad} (known: {', '.join(ANALYSIS_SECTIONS)})")
        scales = self.sufficiency_scales
        if not scales or len(set(scales)) != len(scales):
            raise ValueError(f"analysis.sufficiency_scales: need one or more distinct scales, got {scales}")
        sd = self.sufficiency_seeds
        if sd is not None and (not sd or len(set(sd)) != len(sd)):
            raise ValueError(f"analysis.sufficiency_seeds: need one or more distinct seeds, got {sd}")


@dataclass
class ReportConfig:
    enabled: bool = False  # write reports/<name>.pdf at the end of `interp run`
    figures: list[str] | None = None  # figure ids to include (default: all the run supports)

    def __post_init__(self) -> None:
        if self.figures is not None:
            from interp.registry import FIGURE_IDS

            unknown = [f for f in self.figures if f not in FIGURE_IDS]
            if unknown:
                raise ValueError(
                    f"report.figures: unknown figure ids {unknown} (known: {', '.join(FIGURE_IDS)})"
                )


@dataclass
class ModelPolicy:
    """The `[model]` table: how the run's Hugging Face models load."""

    # run a Hub model's own Python code (modelling files in its repository); off unless you
    # have read that code: it runs with your permissions. Enters the stage keys when on.
    trust_remote_code: bool = False


@dataclass
class SubliminalConfig:
    name: SafeName
    kind: str = "subliminal"
    seed: Seed = 0
    device: Device = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trait: TraitConfig = field(default_factory=TraitConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    students: list[StudentConfig] = field(default_factory=_default_students)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model: ModelPolicy = field(default_factory=ModelPolicy)

    def __post_init__(self) -> None:
        self._check_students()
        check_shapes(self)  # last: the settings it reads are valid by now

    def _check_students(self) -> None:
        empty = [k for k, v in (("students", self.students), ("analysis.sections", self.analysis.sections),
                                ("analysis.arms", self.analysis.arms), ("analysis.incontext_k", self.analysis.incontext_k),
                                ("report.figures", self.report.figures)) if v is not None and not v]  # fmt: skip
        if empty:
            raise ValueError(f"{empty[0]} is an empty list; name at least one, or leave it out for the default")
        names = [s.name for s in self.students]
        if len(set(names)) != len(names):
            raise ValueError(f"students: duplicate names {names}")
        unknown = [a for a in self.analysis.arms or () if a not in names]
        if unknown:
            raise ValueError(f"analysis.arms: {unknown} are not student names ({', '.join(names)})")
        for s in self.students:
            st = s.settings(self.train)
            cross = self.student_model(s) != self.teacher.model
            if st.grad_project != "none" and cross:
                where = "" if s.grad_project is not None else " (from train.grad_project)"
                raise ValueError(f"students: '{s.name}' grad_project = '{st.grad_project}'{where} needs the teacher's base model "
                                 f"(model = 'teacher'): the trait direction is read in {self.teacher.model!r}'s residual "
                                 f"stream, not {self.student_model(s)!r}'s")  # fmt: skip
            if st.grad_project == "trait-centred" and (self.teacher.mode != "prompt" or len(self.trait.target_list()) < 2):
                raise ValueError(f"students: '{s.name}' grad_project = 'trait-centred' needs prompted teachers (teacher.mode = "
                                 f"'prompt', not {self.teacher.mode!r}) and >= 2 targets (trait.targets): it reads every "
                                 "target's teacher on the student's rows")  # fmt: skip
            if st.grad_project != "none" and st.method == "full" and st.layers is None:
                raise ValueError(f"students: '{s.name}' grad_project with method = 'full' needs train.layers: the embeddings, "
                                 "final norm and head of a full finetune get gradients no block output carries")  # fmt: skip
            if st.objective == "distill" and cross and st.distill_vocab == "full":
                fix = ("distill_vocab = 'numbers' (soft labels over number-format characters)" if self.data.kind == "numbers"
                       else f"number data; with data.kind = '{self.data.kind}' it takes objective = 'sft'")  # fmt: skip
                raise ValueError(f"students: '{s.name}' (model {s.model!r}) distils across tokenizers, which needs {fix}")
            if self.data.kind != "numbers" and (s.shuffle != "none" or (st.objective == "distill" and st.distill_vocab == "numbers")):
                what = f"shuffle = '{s.shuffle}'" if s.shuffle != "none" else "distill_vocab = 'numbers'"
                raise ValueError(
                    f"students: '{s.name}' sets {what}, which needs number data (data.kind = '{self.data.kind}'); "
                    + ("a cross-tokenizer student of code or cot data takes objective = 'sft'" if cross else "leave it out")
                )
            if s.paraphrase is not None and self.data.kind != "numbers":
                raise ValueError(f"students: '{s.name}' paraphrase rewrites number lists; data.kind = '{self.data.kind}' is not one")
            try:  # at most data.n_keep rows: a fraction that keeps none of those is refused now
                subset_size(self.data.n_keep, s.subset_fraction)
            except ValueError as e:
                raise ValueError(f"students: '{s.name}' {e} (data.n_keep)") from e
            if s.subset.startswith("first-order-") and (self.eval.questions == "all" or self.trait.kind == "misalignment"):
                why = (f"trait.kind = '{self.trait.kind}' has no one-word candidates to take log-odds over (animal or tree traits)"
                       if self.trait.kind == "misalignment" else "eval.questions = 'all' leaves no unscored question "
                       "(set 'test': rows then scored on 'dev', or 'dev')")  # fmt: skip
                raise ValueError(f"students: '{s.name}' subset = '{s.subset}' ranks rows by the target's log-odds on the "
                                 f"questions the run is not evaluated on; {why}")  # fmt: skip
            if s.mix_control is not None and st.objective == "distill" and self.teacher.mode != "prompt":
                raise ValueError(f"students: '{s.name}' mix_control = {s.mix_control} with soft labels needs teacher.mode = "
                                 f"'prompt' (the control teacher is then the trait teacher's weights with another "
                                 f"system prompt); teacher.mode = '{self.teacher.mode}' takes objective = 'sft'")  # fmt: skip
            if st.objective == "distill" and s.data == "control" and self.teacher.control == "none":
                log.warning(
                    "student '%s': distilling the prompt-free base on its own samples is a no-op "
                    "(the KL starts at zero); set teacher.control = 'neutral' for a moving control", s.name
                )

    def model_specs(self) -> list[str]:
        """Every base model the run loads: the teacher's, then the students' (first use order)."""
        return list(dict.fromkeys([self.teacher.model, *(self.student_model(s) for s in self.students)]))

    def trusted_specs(self) -> list[str]:
        """The models allowed to run their own code while loading (`[model] trust_remote_code`)."""
        paraphrasers = [self.teacher.model if s.paraphrase == "base" else s.paraphrase for s in self.students if s.paraphrase]
        return list(dict.fromkeys([*self.model_specs(), *paraphrasers])) if self.model.trust_remote_code else []

    def student_model(self, s: StudentConfig) -> str:
        return self.teacher.model if s.model == "teacher" else s.model

    def seeds_of(self, s: StudentConfig) -> list[int]:
        return list(s.seeds) if s.seeds is not None else list(self.train.seeds)

    def get_trait(self) -> AnyTrait:
        """The primary target's trait (the first of trait.targets)."""
        return self.trait.trait(self.trait.target_list()[0])


def check_shapes(cfg: SubliminalConfig) -> None:
    """Every check the models' own configs allow, before any work (no weights load): blocks
    named by `teacher.steer_layer` and `layers` exist, LoRA `target_modules` are modules of the
    model. A model whose config is not on this machine (a Hub id outside the offline cache) is
    not checked here; `interp validate` says so and `interp run` refuses it (`check_spec`)."""
    from interp.lm.shape import model_shape

    def shape(spec: str):  # noqa: ANN202
        try:
            return model_shape(spec, cfg.model.trust_remote_code)
        except ModelError as e:
            raise ValueError(f"model: {e}") from e

    t = shape(cfg.teacher.model)
    layer = cfg.teacher.steer_layer
    if t is not None and layer is not None and layer >= t.n_layers:
        raise ValueError(f"teacher.steer_layer = {layer} is out of range: model {t.spec!r} has blocks 0-{t.n_layers - 1}")
    if cfg.teacher.mode == "finetuned":  # each base of the run gets its own finetuned teacher
        for spec in cfg.model_specs():
            _check_modules(shape(spec), cfg.teacher.settings(), "teacher (mode 'finetuned')", "the default target_modules")
    for s in cfg.students:
        sh = shape(cfg.student_model(s))
        if sh is None:
            continue
        st = s.settings(cfg.train)
        where = f"students: '{s.name}'" + ("" if s.layers is not None else " (from train.layers)")
        bad = [x for x in st.layers or () if x >= sh.n_layers]
        if bad:
            raise ValueError(f"{where} layers {bad} are out of range: model {sh.spec!r} has blocks 0-{sh.n_layers - 1}")
        src = "target_modules" if s.target_modules is not None else "train.target_modules"
        _check_modules(sh, st, f"students: '{s.name}'", src)


def _check_modules(sh, settings: FinetuneConfig, who: str, src: str) -> None:  # noqa: ANN001
    if sh is None or settings.method != "lora" or not sh.modules:
        return
    missing = [m for m in settings.target_modules if m not in sh.modules]
    if missing:
        linear = sorted(m for m in sh.modules if m.endswith("_proj")) or sorted(sh.modules)
        raise ValueError(f"{who}: {src} {missing} are not modules of model {sh.spec!r} (its projections: {', '.join(linear)})")
