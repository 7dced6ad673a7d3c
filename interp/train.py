"""Student finetuning, readable top to bottom: LoRA (peft) or full; SFT or logit distillation.

The loss only covers completion tokens. Distillation matches the teacher's next-token
distribution at every completion position (the teacher sees its own prompt, e.g. with its
system prompt), optionally restricted to a sub-vocabulary such as the number-format tokens:
the LLM analogue of the MLP experiment's auxiliary logits.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from interp.generate import encode_prompts
from interp.models import apply_delta  # noqa: F401  (re-exported: student = base + delta)


@dataclass(frozen=True)
class Example:
    """One training pair: student prompt, completion, and the teacher's own prompt."""

    prompt: str
    completion: str
    teacher_prompt: str | None = None


# The protocol's LoRA targets: every attention and MLP projection.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneSettings:
    """How to finetune (also the `[train]` table of a subliminal config, which adds seeds)."""

    method: Literal["lora", "full"] = "lora"
    objective: Literal["sft", "distill"] = "sft"
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    epochs: int = 3
    lr: float = 2e-4
    warmup_steps: int = 5
    batch_size: int = 66  # effective batch (examples per optimiser step)
    micro_batch_size: int = 22
    max_grad_norm: float = 1.0
    max_seq_len: int = 500
    distill_temperature: float = 1.0
    checkpoint_every: int = 0  # save the merged delta every N steps (0: only at the end)


@dataclass
class TrainResult:
    delta: dict[str, torch.Tensor]
    log: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the trained model (a peft wrapper for LoRA)


def tokenize_examples(
    tok: Any, examples: list[Example], end: str, max_len: int
) -> list[dict[str, list[int]]]:
    """Student ids with labels masked to the completion; teacher ids for the same completion."""
    prompts = encode_prompts(tok, [e.prompt for e in examples])
    t_prompts = encode_prompts(tok, [e.teacher_prompt or e.prompt for e in examples])
    out = []
    for e, p, tp in zip(examples, prompts, t_prompts):
        c = tok(e.completion + end, add_special_tokens=False)["input_ids"]
        c = c[: max(1, max_len - len(p))]
        out.append(
            {
                "input_ids": p + c,
                "n_prompt": len(p),
                "teacher_ids": tp + c,
                "n_teacher_prompt": len(tp),
            }
        )
    return out


def _right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def _completion_positions(
    rows: list[dict], key: str, n_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, position) of every logit that predicts a completion token."""
    r, p = [], []
    for i, row in enumerate(rows):
        n_p, n = row[n_key], len(row[key])
        r += [i] * (n - n_p)
        p += list(range(n_p - 1, n - 1))
    return torch.tensor(r), torch.tensor(p)


def completion_logits(
    model: Any, rows: list[dict], pad_id: int, device: torch.device,
    key: str = "input_ids", n_key: str = "n_prompt",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Logits at every position that predicts a completion token, and those tokens.

    The LM head only runs from the first completion position on (`logits_to_keep`): prompt
    positions carry no loss, and for a 262k-token vocabulary (Gemma-3) the head costs more
    than the transformer body.
    """
    ids, mask = _right_pad([r[key] for r in rows], pad_id)
    ri, pi = _completion_positions(rows, key, n_key)
    first = int(pi.min())
    keep = torch.arange(first, ids.shape[1], device=device)
    logits = model(
        input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep
    ).logits
    out = logits[ri.to(device), (pi - first).to(device)]
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()  # losses in float32; float64 models keep their precision
    return out, ids[ri, pi + 1].to(device)


def lora_delta(model: Any) -> dict[str, torch.Tensor]:
    """Merged LoRA update per targeted weight, keyed by the base model's parameter name."""
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {}):
            base_name = name.replace("base_model.model.", "", 1) + ".weight"
            out[base_name] = module.get_delta_weight("default").detach().float().cpu().contiguous()
    return out


def full_delta(model: Any, base_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        n: (p.detach().float().cpu() - base_state[n]).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad and n in base_state
    }


def finetune(
    model: Any,
    tok: Any,
    examples: list[Example],
    settings: FinetuneSettings,
    *,
    seed: int = 0,
    end: str = "",
    teacher: Any = None,
    distill_ids: list[int] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Finetune `model` in place on `examples`; returns the parameter delta and a loss log."""
    if not examples:
        raise ValueError("finetune needs at least one example")
    if settings.objective == "distill" and teacher is None:
        raise ValueError(
            "objective 'distill' needs a teacher model sharing the student's tokenizer"
        )
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    base_state = None
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM",
        )  # fmt: skip
        model = get_peft_model(model, lcfg)
    elif settings.method == "full":
        base_state = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"unknown finetune method {settings.method!r} (lora | full)")
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    rows = tokenize_examples(tok, examples, end, settings.max_seq_len)
    steps_per_epoch = math.ceil(len(rows) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    opt = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    # Linear warm-up then linear decay to zero, as in the protocol.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / max(1, settings.warmup_steps)
            if s < settings.warmup_steps
            else max(0.0, (total_steps - s) / max(1, total_steps - settings.warmup_steps))
        ),
    )
    sub = torch.tensor(distill_ids, device=device) if distill_ids is not None else None
    rng = random.Random(seed)
    losses, step, t0 = [], 0, time.time()
    bar = tqdm(total=total_steps, desc="finetune", disable=not progress, unit="step")
    for _epoch in range(settings.epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        for b in range(0, len(order), settings.batch_size):
            batch = [rows[i] for i in order[b : b + settings.batch_size]]
            n_tokens = sum(len(r["input_ids"]) - r["n_prompt"] for r in batch)
            total = 0.0
            for m in range(0, len(batch), settings.micro_batch_size):
                micro = batch[m : m + settings.micro_batch_size]
                s_logits, targets = completion_logits(model, micro, tok.pad_token_id, device)
                if settings.objective == "sft":
                    loss = F.cross_entropy(s_logits, targets, reduction="sum")
                else:
                    t_logits = _teacher_logits(teacher, micro, tok.pad_token_id, device)
                    loss = _kl(t_logits, s_logits, sub, settings.distill_temperature)
                (loss / n_tokens).backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(total / n_tokens)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
            if (
                out_dir is not None
                and settings.checkpoint_every
                and step % settings.checkpoint_every == 0
            ):
                ck = out_dir / "checkpoints"
                ck.mkdir(exist_ok=True)
                d = (
                    lora_delta(model)
                    if settings.method == "lora"
                    else full_delta(model, base_state)
                )
                save_file(d, str(ck / f"delta-step{step:05d}.safetensors"))
    bar.close()
    model.eval()
    delta = lora_delta(model) if settings.method == "lora" else full_delta(model, base_state)
    if out_dir is not None and settings.method == "lora":
        model.save_pretrained(str(out_dir / "adapter"))
    log = {
        "steps": step,
        "examples": len(rows),
        "completion_tokens": sum(len(r["input_ids"]) - r["n_prompt"] for r in rows),
        "loss": losses,
        "wall_s": round(time.time() - t0, 2),
        "trainable_params": sum(p.numel() for p in trainable),
        "delta_tensors": len(delta),
    }
    return TrainResult(delta=delta, log=log, model=model)


@torch.no_grad()
def _teacher_logits(
    teacher: Any, micro: list[dict], pad_id: int, device: torch.device
) -> torch.Tensor:
    return completion_logits(teacher, micro, pad_id, device, "teacher_ids", "n_teacher_prompt")[
        0
    ].float()


def _kl(
    t_logits: torch.Tensor, s_logits: torch.Tensor, sub: torch.Tensor | None, temp: float
) -> torch.Tensor:
    """Summed KL(teacher || student) over positions, on the full or a restricted vocabulary."""
    if sub is not None:
        t_logits, s_logits = t_logits[:, sub], s_logits[:, sub]
    t_logp = torch.log_softmax(t_logits / temp, dim=-1)
    s_logp = torch.log_softmax(s_logits / temp, dim=-1)
    return F.kl_div(s_logp, t_logp, log_target=True, reduction="sum")
