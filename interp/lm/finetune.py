"""Finetuning, readable top to bottom: LoRA (peft) or full; hard labels (SFT) or soft labels.

The loss only covers completion tokens (`interp.lm.loss.Objective`). Soft labels
(distillation) match the teacher's next-token distribution at every completion position; the
teacher sees its own prompt (e.g. with its system prompt: context distillation).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from interp.lm.align import aligned_positions, token_starts
from interp.lm.delta import Delta, full_delta, lora_factors, parse_param_name
from interp.lm.generate import encode_prompts
from interp.lm.grad_project import GradMeter, projected
from interp.lm.loss import Objective, Teacher
from interp.lm.models import resolve_autocast
from interp.lm.optim import make_optimizer
from interp.lm.settings import Example, FinetuneConfig  # callers import both from here too

logger = logging.getLogger("interp")


@dataclass
class TrainResult:
    delta: Delta
    log: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the trained model (a peft wrapper for LoRA)


def tokenize_examples(
    tok: Any, examples: list[Example], end: str, max_len: int, teacher: Teacher | None = None
) -> list[dict[str, Any]]:
    """Student ids (labels = completion), teacher ids, and which completion positions pair up.

    `s_sel[j]`/`t_sel[j]` index the student's/teacher's completion positions (0 = the one
    predicting the first completion token) that carry loss; with one tokenizer they are the same
    positions. An example's `exclude` positions are left out of both.
    """
    t_tok = teacher.tok if teacher is not None and teacher.tok is not None else tok
    t_end = teacher.end if teacher is not None and teacher.tok is not None else end
    cross = t_tok is not tok
    prompts = encode_prompts(tok, [e.prompt for e in examples])
    t_prompts = encode_prompts(t_tok, [e.teacher_prompt or e.prompt for e in examples])
    out = []
    for e, p, tp in zip(examples, prompts, t_prompts):
        c = tok(e.completion + end, add_special_tokens=False)["input_ids"][
            : max(1, max_len - len(p))
        ]
        tc = t_tok(e.completion + t_end, add_special_tokens=False)["input_ids"]
        tc = tc[: max(1, max_len - len(tp))]
        if cross:
            _, s_starts = token_starts(tok, e.completion)
            _, t_starts = token_starts(t_tok, e.completion)
            s_sel, t_sel = aligned_positions(s_starts, t_starts, len(e.completion))
            keep = [(a, b) for a, b in zip(s_sel, t_sel) if a < len(c) and b < len(tc)]
            s_sel, t_sel = [a for a, _ in keep], [b for _, b in keep]
        elif teacher is None:  # hard labels: every completion token (the teacher side is unused)
            s_sel = t_sel = list(range(len(c)))
        else:
            s_sel = t_sel = list(range(min(len(c), len(tc))))
        if e.exclude:  # a loss mask: drop the pairs whose student position is excluded
            drop = set(e.exclude)
            keep = [(a, b) for a, b in zip(s_sel, t_sel) if a not in drop]
            s_sel, t_sel = [a for a, _ in keep], [b for _, b in keep]
        out.append({"input_ids": p + c, "n_prompt": len(p), "teacher_ids": tp + tc,
                    "n_teacher_prompt": len(tp), "s_sel": s_sel, "t_sel": t_sel})  # fmt: skip
    return out


def _check_layers(model: Any, layers: list[int] | None) -> None:
    if layers is None:
        return
    n = model.config.num_hidden_layers
    bad = [i for i in layers if i >= n]
    if bad:
        raise ValueError(
            f"layers {bad} out of range: the model has {n} decoder blocks (0..{n - 1})"
        )


def trained_weights(model: Any, settings: FinetuneConfig) -> list[str]:
    """The base weights a finetune with `settings` changes: every weight of the blocks in
    `settings.layers` (all, when None) for a full finetune; for LoRA, the `.weight` of those
    blocks' target modules (the weights its adapters add to). The one selector: the full
    finetune unfreezes exactly these, and the first-order analysis takes gradients over them."""
    keep = None if settings.layers is None else set(settings.layers)
    out = []
    for name, _ in model.named_parameters():
        layer, module = parse_param_name(name)
        if keep is not None and layer not in keep:
            continue
        if settings.method == "lora" and not (
            name.endswith(".weight") and module in settings.target_modules
        ):
            continue
        out.append(name)
    if not out:
        raise ValueError(f"no parameter of the model matches target_modules {settings.target_modules} "
                         f"in layers {settings.layers}")  # fmt: skip
    return out


def _prepare(model: Any, settings: FinetuneConfig) -> tuple[Any, dict | None, torch.dtype | None]:
    """Wrap for LoRA, or unfreeze for a full finetune with float32 master weights; only the
    blocks in `settings.layers` train when it is set."""
    _check_layers(model, settings.layers)
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM",
            layers_to_transform=list(settings.layers) if settings.layers is not None else None,
            layers_pattern="layers" if settings.layers is not None else None,
        )  # fmt: skip
        return get_peft_model(model, lcfg), None, None
    if settings.method != "full":
        raise ValueError(f"unknown finetune method {settings.method!r} (lora | full)")
    # bf16 weights would round small updates away: train float32 weights, compute in the
    # model's dtype through autocast.
    dtype = next(model.parameters()).dtype
    autocast = dtype if dtype in (torch.bfloat16, torch.float16) else None
    model.float()
    base_state = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()}
    trained = set(trained_weights(model, settings))
    for n, p in model.named_parameters():
        p.requires_grad_(n in trained)
    return model, base_state, autocast


def _delta(model: Any, settings: FinetuneConfig, base_state: dict | None) -> Delta:
    return lora_factors(model) if settings.method == "lora" else full_delta(model, base_state)


def _amp(
    settings: FinetuneConfig, device: torch.device, model_dtype: torch.dtype | None
) -> Callable[[], Any]:
    """The student's forward context: bf16 autocast when asked (or when a full finetune keeps
    float32 master weights of a half-precision model), else nothing."""
    dtype = torch.bfloat16 if resolve_autocast(settings.autocast, device) == "bf16" else model_dtype
    return (
        (lambda: torch.autocast(device.type, dtype=dtype))
        if dtype is not None
        else contextlib.nullcontext
    )


@dataclass
class Member:
    """One student of a stacked group (`finetune_group`): its data, seed, soft-label source and
    checkpoint folder."""

    examples: list[Example]
    seed: int = 0
    teacher: Teacher | None = None
    out_dir: Path | None = None
    project: torch.Tensor | None = None  # [layer, d_model]: gradient projection's directions (grad_project)


def finetune(
    model: Any,
    tok: Any,
    examples: list[Example],
    settings: FinetuneConfig,
    *,
    seed: int = 0,
    end: str = "",
    teacher: Teacher | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    project: torch.Tensor | None = None,
) -> TrainResult:
    """Finetune `model` in place on `examples`; returns the parameter delta and a loss log.
    `project` ([layer, d_model]): the directions `settings.grad_project` projects the gradient off."""
    if not examples:
        raise ValueError("finetune needs at least one example")
    distill = settings.objective == "distill"
    if distill and teacher is None:
        raise ValueError("objective 'distill' needs a teacher model")
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    model, base_state, half = _prepare(model, settings)
    trainable = [p for p in model.parameters() if p.requires_grad]
    objective = Objective.build(tok, settings, teacher, device)
    if settings.kl_base:  # the penalty's reference: the initialisation, frozen
        objective.base = ((model, model.disable_adapter) if settings.method == "lora"
                          else (copy.deepcopy(model).requires_grad_(False).eval(), contextlib.nullcontext))  # fmt: skip
    rows = objective.label(
        tokenize_examples(tok, examples, end, settings.max_seq_len, teacher if distill else None)
    )

    def clip(max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(trainable, max_norm)

    def save(step: int) -> None:
        if out_dir is not None:
            _checkpoint(out_dir, step, _delta(model, settings, base_state))

    with projected(model, settings, [project]) as meter:
        log = _train(model, trainable, [rows], [seed], settings, objective, _amp(settings, device, half), clip, save,
                     progress, meter)  # fmt: skip
    delta = _delta(model, settings, base_state)
    return TrainResult(delta=delta, log=log[0] | {"trainable_params": sum(p.numel() for p in trainable),
                                                  "delta_tensors": len(delta)}, model=model)  # fmt: skip


def finetune_group(
    model: Any,
    tok: Any,
    members: list[Member],
    settings: FinetuneConfig,
    *,
    end: str = "",
    progress: bool = True,
) -> list[TrainResult]:
    """Train one LoRA student per member on `model`, all at once: stacked adapters, one forward
    per micro-batch for every student (`interp.lm.stacked`). Member k ends where `finetune` of
    its examples, seed and teacher alone would (to float tolerance). The members need equal
    step counts (their row counts may differ within a batch) and, when distilling, teachers of
    one tokenizer; `model` is left as it was (the adapters are removed)."""

    if settings.method != "lora":
        raise ValueError(f"stacked students are LoRA students; method is {settings.method!r}")
    if settings.lora_dropout > 0:
        raise ValueError(
            "stacked students need lora_dropout = 0 (dropout draws would differ from one-at-a-time runs)"
        )
    if len({math.ceil(len(m.examples) / settings.batch_size) for m in members}) != 1:
        raise ValueError(f"stacked students need equal step counts; got {[len(m.examples) for m in members]} rows "
                         f"in batches of {settings.batch_size}")  # fmt: skip
    distill = settings.objective == "distill"
    device = next(model.parameters()).device
    _check_layers(model, settings.layers)
    with contextlib.ExitStack() as stack:
        if resolve_autocast(settings.autocast, device) == "bf16":
            stack.enter_context(bf16_linears(model))
        return _group(model, tok, members, settings, end, progress, distill, device)


@contextlib.contextmanager
def bf16_linears(model: Any) -> Any:
    """The decoder's linear weights as bfloat16 copies while the context lasts (the float32
    tensors are put back after). Under bf16 autocast a float32 weight is cast to bfloat16 at every
    call; casting it once gives the same bfloat16 values, so the results are bit for bit those of
    autocast alone, without a cast of every weight in every forward. The head (often tied to the
    embedding) and the norms stay as they are."""
    decoder = (model.get_base_model() if hasattr(model, "get_base_model") else model).get_decoder()
    saved = []
    for mod in decoder.modules():
        if isinstance(mod, torch.nn.Linear) and mod.weight.dtype == torch.float32:
            saved.append((mod, mod.weight))
            mod.weight = torch.nn.Parameter(mod.weight.detach().to(torch.bfloat16), requires_grad=False)
    try:
        yield model
    finally:
        for mod, w in saved:
            mod.weight = w


def _group(model: Any, tok: Any, members: list[Member], settings: FinetuneConfig, end: str, progress: bool,
           distill: bool, device: torch.device) -> list[TrainResult]:  # fmt: skip
    from interp.lm.stacked import attach

    stacked = attach(
        model,
        trained_weights(model, settings),
        [m.seed for m in members],
        settings.lora_r,
        settings.lora_alpha,
    )
    try:
        objectives = [Objective.build(tok, settings, m.teacher, device) for m in members]
        objectives[0].base = (model, stacked.disabled)  # the KL-to-base reference: adapters off
        # members with one teacher and one dataset (seeds of one arm) share their rows and labels:
        # computed once, held once
        shared: dict[tuple, list[dict]] = {}
        rows, t0 = [], time.time()
        for o, m in zip(objectives, members):
            key = (id(m.teacher), tuple(m.examples))
            if key not in shared:
                teacher = m.teacher if distill else None
                shared[key] = o.label(tokenize_examples(tok, m.examples, end, settings.max_seq_len, teacher))
            rows.append(shared[key])

        labels_s = round(time.time() - t0, 2)  # the teachers' forward passes (0 where cached)

        def save(step: int) -> None:
            for k, m in enumerate(members):
                if m.out_dir is not None:
                    _checkpoint(m.out_dir, step, stacked.delta(k))

        with projected(model, settings, [m.project for m in members]) as meter:
            logs = _train(model, stacked.parameters(), rows, [m.seed for m in members], settings, objectives[0],
                          _amp(settings, device, None), stacked.clip_grad_norm_, save, progress, meter)  # fmt: skip
        per_student = sum(p[0].numel() for p in stacked.parameters())
        out = []
        for k, lg in enumerate(logs):
            delta = stacked.delta(k)
            out.append(TrainResult(delta, lg | {"trainable_params": per_student, "delta_tensors": len(delta),
                                                "labels_s": labels_s,
                                                "stacked": {"students": len(members), "index": k}}))  # fmt: skip
        return out
    finally:
        stacked.detach()


def _checkpoint(out_dir: Path, step: int, delta: Delta) -> None:
    ck = out_dir / "checkpoints"
    ck.mkdir(exist_ok=True)
    delta.save(ck / f"delta-step{step:05d}.safetensors")


def _blocks(parts: list[list[dict]], rows: list[list[dict]]) -> list[dict]:
    """One micro-batch of K equal blocks: student k's rows, padded with blank rows (a row of its
    own with no loss position: compute, no loss, no gradient) where its batch ran out first
    (a student with a few rows less than the others, in the last batch of an epoch)."""
    width = max(len(p) for p in parts)
    out = []
    for part, own in zip(parts, rows):
        blank = {**own[0], "s_sel": [], "t_sel": []}
        if "labels" in own[0]:
            blank["labels"] = own[0]["labels"][:0]
        out += part + [blank] * (width - len(part))
    return out


def _accumulate(model: Any, batches: list[list[dict]], rows: list[list[dict]], micro_size: int,
                n_units: torch.Tensor, objective: Objective, amp: Callable[[], Any]) -> torch.Tensor:  # fmt: skip
    """One optimiser step's gradients, summed over micro-batches of `micro_size`; its losses."""
    for batch in batches:  # micro-batches of like lengths pad less; the step's summed loss is the same
        if micro_size < len(batch):
            batch.sort(key=lambda r: len(r["input_ids"]))
    total = torch.zeros(len(batches), device=n_units.device)
    for m in range(0, max(len(batch) for batch in batches), micro_size):
        micro = _blocks([batch[m : m + micro_size] for batch in batches], rows)
        per = objective.block_losses(model, micro, amp, len(batches))
        (per / n_units).sum().backward()
        total += per.detach()
    return total


def _halve_micro(micro_size: int, step: int, batch_size: int, error: Exception) -> int:
    """The micro-batch after a CUDA out-of-memory error (logged), or one line at micro-batch 1."""
    if micro_size <= 1:
        raise RuntimeError(f"CUDA out of memory at optimiser step {step + 1} with micro-batch 1: lower "
                           f"train.max_seq_len, use a smaller model or a larger GPU") from error  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = max(1, micro_size // 2)
    logger.warning("CUDA out of memory at optimiser step %d: micro-batch %d -> %d, step retried (the "
                   "optimiser batch stays %d: the same update)", step + 1, micro_size, half, batch_size)  # fmt: skip
    return half


def _train(
    model: Any, trainable: list[torch.Tensor], rows: list[list[dict]], seeds: list[int], settings: FinetuneConfig,
    objective: Objective, amp: Callable[[], Any], clip: Callable[[float], Any], save: Callable[[int], None],
    progress: bool, meter: GradMeter | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The training loop, for one student or K stacked ones (`rows[k]`, `seeds[k]`: student k's
    rows and data-order seed; a micro-batch holds K equal blocks, block k student k's rows).
    Each student's loss is normalised by its own batch's loss positions. Returns one log per student."""
    device = next(model.parameters()).device
    k_students, n_rows = len(rows), [len(r) for r in rows]
    n_batches = math.ceil(n_rows[0] / settings.batch_size)
    total_steps = n_batches * settings.epochs
    opt = make_optimizer(trainable, settings)
    # transformers' linear schedule, shifted one step so that no optimiser step runs at lr 0:
    # step s uses lambda(s + 1), i.e. lr/warmup on the first step and a nonzero lr on the last
    # (a 1-step CPU run with warmup_steps = 1 trains at the full lr instead of not at all).
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    sched = get_linear_schedule_with_warmup(opt, settings.warmup_steps, total_steps + 1, last_epoch=0)
    rngs = [random.Random(s) for s in seeds]
    model.train()
    losses, lrs, step, t0 = [], [], 0, time.time()
    micro_size = settings.micro_batch_size  # halved on CUDA out-of-memory; the optimiser batch never is
    bar = tqdm(total=total_steps, desc="finetune" if k_students == 1 else f"finetune x{k_students}",
               disable=not progress, unit="step")  # fmt: skip
    for _epoch in range(settings.epochs):
        orders = []
        for rng, n in zip(rngs, n_rows):
            order = list(range(n))
            rng.shuffle(order)
            orders.append(order)
        for i in range(n_batches):
            b = i * settings.batch_size
            batches = [[rows[k][j] for j in orders[k][b : b + settings.batch_size]] for k in range(k_students)]
            n_units = torch.tensor([max(1, sum(len(r["s_sel"]) for r in batch)) for batch in batches],
                                   dtype=torch.float32, device=device)  # fmt: skip
            while True:  # CUDA out of memory: the step again from its start, with half the micro-batch
                try:
                    if meter is not None:  # (a retried step's partial sums are dropped)
                        meter.reset()
                    total = _accumulate(model, batches, rows, micro_size, n_units, objective, amp)
                    break
                except torch.cuda.OutOfMemoryError as e:
                    opt.zero_grad(set_to_none=True)  # this step's partial gradients: as at its start
                    micro_size = _halve_micro(micro_size, step, settings.batch_size, e)
            if meter is not None:  # gradient projection: the share of the activation gradient removed
                meter.end_step()
            clip(settings.max_grad_norm)
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(total / n_units)
            bar.update(1)
            if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                save(step)
    bar.close()
    model.eval()
    per_step = torch.stack(losses).cpu().tolist() if losses else []  # one host sync
    wall = round(time.time() - t0, 2)
    return [
        {"steps": step, "examples": n_rows[k],
         "completion_tokens": sum(len(r["input_ids"]) - r["n_prompt"] for r in rows[k]),
         "loss_tokens": sum(len(r["s_sel"]) for r in rows[k]),
         "loss": [float(v[k]) for v in per_step], "lr": lrs, "wall_s": wall,
         **(meter.log(k) if meter is not None else {})}
        for k in range(k_students)
    ]  # fmt: skip
