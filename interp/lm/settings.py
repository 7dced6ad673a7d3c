"""How one model is finetuned: the settings (`FinetuneConfig`), how they enter a stage's key, and
which students may train stacked. Read by the training loop (`interp.lm.finetune`) and by the
losses (`interp.lm.loss`), so neither imports the other for its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from interp.config import (
    LearningRate,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Range,
    Temperature,
    UnitFloat,
)

# The protocol's LoRA targets: every attention and MLP projection.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Example:
    """One training pair: student prompt, completion, the teacher's own prompt, and the
    completion positions (student tokens; 0 predicts the first) left out of the loss."""

    prompt: str
    completion: str
    teacher_prompt: str | None = None
    exclude: tuple[int, ...] = ()


@dataclass
class FinetuneConfig:
    """How to finetune one model (a teacher or a student)."""

    method: Literal["lora", "full"] = "lora"
    objective: Literal["sft", "distill"] = "sft"
    distill_vocab: Literal["full", "numbers"] = "full"
    lora_r: PosInt = 8
    lora_alpha: PosInt = 8
    lora_dropout: UnitFloat = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    epochs: PosInt = 3
    lr: LearningRate = 2e-4
    warmup_steps: NonNegInt = 5
    batch_size: PosInt = 66  # effective batch (examples per optimiser step)
    micro_batch_size: PosInt = 22
    max_grad_norm: PosFloat = 1.0
    max_seq_len: Annotated[int, Range(8)] = 500
    distill_temperature: Temperature = 1.0
    checkpoint_every: NonNegInt = (
        0  # save the delta (LoRA factors: small) every N steps; 0 = only at the end
    )
    # AdamW; SGD with momentum; SignSGD (Signum: the sign of the momentum buffer; momentum 0 = plain signs)
    optimizer: Literal["adamw", "sgd", "signsgd"] = "adamw"
    momentum: UnitFloat = 0.9  # sgd and signsgd only
    # decoder blocks that train (indices; e.g. [3] or list(range(0, 6))); None = every block.
    # LoRA: adapters only on those blocks; full: only those blocks' weights (embeddings, final
    # norm and head frozen too)
    layers: list[NonNegInt] | None = None
    # the student's forward and backward under bfloat16 autocast (weights and optimiser stay
    # float32): ~2x faster on a CPU with avx512_bf16 and on GPUs, ~6x slower on a CPU without it
    # (emulated); "off" computes in the model's dtype; "auto": bf16 where the device has it natively
    # (`models.native_bf16`), else off -- resolved when a run opens (`runner.open_run`), so stage
    # keys and the run's config.toml hold what was used
    autocast: Literal["off", "bf16", "auto"] = "off"
    # LoRA students of one base that share these settings train together, stacked (one forward
    # for all: `interp.lm.stacked`), with at most this many rows in one forward (micro-batch
    # rows x students; when unset `stack_rows_for` gives 48 on CPU, where activations of
    # ~150-token rows take ~0.17 GB each, and 1024 on CUDA); 0 trains one at a time. An
    # execution choice: not part of a stage's key
    stack_rows: NonNegInt | None = None
    # the student's training prompts with its chat template's own system prompt where none is
    # given (SmolLM2 inserts one); false: no system turn at all (`models.format_chat`)
    default_system_prompt: bool = True
    # a KL-to-base penalty ("liminal training", a defence): the loss gains kl_base x
    # KL(base || student) at the loss positions, over the full vocabulary, where the base is the
    # student's own initialisation (`interp.lm.loss.Objective.base`: LoRA, the adapters off; a
    # full finetune holds a frozen copy of the model); one more forward per micro-batch; 0 = off
    kl_base: NonNegFloat = 0.0
    # gradient projection off the trait direction (a defence): "trait" removes from the gradient
    # reaching each decoder block's output its component along that block's direction v_l (the
    # teacher's mean residual shift on the training rows; the caller passes it: `finetune(project=)`,
    # `interp.lm.grad_project`); "none" = off
    grad_project: Literal["none", "trait", "trait-centred"] = "none"

    def __post_init__(self) -> None:
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module (e.g. q_proj)")
        if self.layers is not None and not self.layers:
            raise ValueError(
                "layers must name at least one block index, or be left out for every block"
            )


# Fields left out of a stage's key: how students are scheduled does not change what they learn
# (stacked and one-at-a-time training agree to float tolerance: tests/unit/test_stacked.py).
EXECUTION_ONLY = ("stack_rows",)
# Fields added after stages were first keyed: in a key only when set, so older keys stay valid.
KEYED_WHEN_SET: dict[str, Any] = {"autocast": "off", "default_system_prompt": True, "kl_base": 0.0,
                                  "grad_project": "none"}


def settings_key(settings: FinetuneConfig) -> dict[str, Any]:
    """The settings as they enter a stage's key."""
    out = {k: v for k, v in settings.__dict__.items() if k not in EXECUTION_ONLY}
    return {k: v for k, v in out.items() if not (k in KEYED_WHEN_SET and v == KEYED_WHEN_SET[k])}


def stack_rows_for(settings: FinetuneConfig, device: str) -> int:
    """The most rows one stacked forward may hold: `settings.stack_rows`, or the device's default."""
    if settings.stack_rows is not None:
        return settings.stack_rows
    return 1024 if str(device).startswith("cuda") else 48


def stack_key(settings: FinetuneConfig, device: str = "cpu") -> tuple | None:
    """Students whose settings give equal keys here (and that share a base, a teacher tokenizer
    and a row count) can train stacked; None: this one trains alone."""
    lora = settings.method == "lora" and settings.lora_dropout == 0
    if not lora or stack_rows_for(settings, device) < 2 * settings.micro_batch_size:
        return None
    return tuple(sorted((k, str(v)) for k, v in settings.__dict__.items()))
