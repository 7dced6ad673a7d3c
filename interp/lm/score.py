"""Scoring text under a model without sampling.

`completion_scores` reads training examples teacher-forced (per-token log-probs and argmax, at
the positions training uses). Log-probabilities of many continuations of one prompt share the
prompt's KV cache:

`prompts_continuations_logprobs` runs a batch of prompts once, then every continuation on the
prompts' KV cache repeated along the batch (`batch_repeat_interleave`): a thousand 3-token
continuations cost a thousand 3-token rows in one forward, not a thousand prompts. The
evaluation's candidate score, the paired answers, the entanglement, in-context and detection
analyses all score through it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.lm.finetune import Example, tokenize_examples
from interp.lm.generate import encode_prompts, left_pad, positions_from_mask
from interp.lm.loss import completion_logits
from interp.lm.models import completion_suffix, format_prompt


@dataclass
class SharedPrefix:
    """A text already run through the model: its token ids and KV cache (left untouched)."""

    ids: list[int]
    cache: Any


@torch.inference_mode()
def shared_prefix(model: Any, tok: Any, text: str) -> SharedPrefix:
    """Run `text` (the start of many prompts, e.g. in-context examples) once."""
    ids = encode_prompts(tok, [text])[0]
    device = next(model.parameters()).device
    return SharedPrefix(ids, model(input_ids=torch.tensor([ids], device=device), use_cache=True).past_key_values)


@torch.inference_mode()
def prompts_continuations_logprobs(
    model: Any, prompt_ids: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
    pad_id: int, batch_size: int = 64, max_logits: int = 2**26, prefix: SharedPrefix | None = None,
    progress: bool = False, desc: str = "log-prob score", blocks: int = 1,
) -> np.ndarray:  # fmt: skip
    """[prompt, continuation]: the summed token log-probs of every continuation after every prompt.
    With `blocks` > 1, [block, prompt, continuation]: each prompt batch runs once per stacked
    student (`interp.lm.stacked`), as `blocks` equal blocks of one batch.

    Each batch of prompts (left-padded) runs once. Its KV cache is then repeated along the batch,
    once per multi-token continuation, and every continuation's remaining tokens run in one
    forward, right-padded to the longest (padding comes after a row's own tokens, so it changes
    none of them): a few tokens per (prompt, continuation) instead of a whole prompt, and one
    forward instead of one per continuation. `max_logits` bounds the logits one forward holds
    (rows x tokens x vocabulary): past it the continuations are split into groups.

    With `prefix` (a text already run, e.g. in-context examples), each prompt that starts with
    its tokens runs alone, only its rest, on a copy of the prefix's cache; others run whole.
    """
    conts = [list(c) for c in continuations]
    if prefix is not None and blocks > 1:
        raise ValueError("a shared prefix and stacked blocks do not combine")
    if any(len(c) == 0 for c in conts):
        raise ValueError("every continuation needs at least one token")
    device = next(model.parameters()).device
    first_ids = torch.tensor([c[0] for c in conts], device=device)
    multi = [c for c, cid in enumerate(conts) if len(cid) > 1]
    width = max((len(conts[c]) - 1 for c in multi), default=0)
    feed = torch.full((len(multi), max(1, width)), pad_id, dtype=torch.long)
    target, real = torch.zeros_like(feed), torch.zeros_like(feed)
    for j, c in enumerate(multi):
        k = len(conts[c]) - 1
        feed[j, :k], target[j, :k], real[j, :k] = torch.tensor(conts[c][:-1]), torch.tensor(conts[c][1:]), 1
    feed, target, real = feed.to(device), target.to(device), real.to(device)
    out = np.zeros((blocks, len(prompt_ids), len(conts)))
    step = 1 if prefix is not None else batch_size
    for start in tqdm(range(0, len(prompt_ids), step), desc=desc, disable=not progress):
        batch = [list(p) for p in prompt_ids[start : start + step]]
        res, mask, pos = _run_prompts(model, batch * blocks, pad_id, device, prefix)
        n = mask.shape[0]
        lp = torch.log_softmax(res.logits[:, -1].float(), dim=-1)[:, first_ids]  # [n, continuation]
        per = max(1, max_logits // (n * width * res.logits.shape[-1])) if multi else 0
        groups = [list(range(g, min(g + per, len(multi)))) for g in range(0, len(multi), per or 1)]
        for gi, group in enumerate(groups):
            g = len(group)
            last = gi == len(groups) - 1  # the last group may repeat the prompt cache in place
            cache = res.past_key_values if last else copy.deepcopy(res.past_key_values)
            cache.batch_repeat_interleave(g)  # row i * g + j: prompt i, continuation group[j]
            rows, tgt, on = feed[group].repeat(n, 1), target[group].repeat(n, 1), real[group].repeat(n, 1)
            cmask = torch.cat([mask.repeat_interleave(g, dim=0), on.to(mask.dtype)], dim=1)
            cpos = (pos[:, -1:] + 1 + torch.arange(width, device=device)).repeat_interleave(g, dim=0)
            logits = model(input_ids=rows, attention_mask=cmask, position_ids=cpos,
                           past_key_values=cache, use_cache=True).logits  # fmt: skip
            more = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt[..., None])[..., 0]
            lp[:, [multi[j] for j in group]] += torch.where(on.bool(), more, 0.0).sum(-1).view(n, g)
        out[:, start : start + len(batch)] = lp.double().cpu().numpy().reshape(blocks, len(batch), -1)
    return out[0] if blocks == 1 else out


def _run_prompts(
    model: Any, batch: list[list[int]], pad_id: int, device: torch.device, prefix: SharedPrefix | None
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """(output with the last position's logits and the cache, attention mask, positions)."""
    if prefix is not None:
        (p_ids,) = batch
        n0, n_prompt = len(prefix.ids), len(p_ids)
        if n_prompt > n0 and p_ids[:n0] == prefix.ids:
            mask = torch.ones(1, n_prompt, dtype=torch.long, device=device)
            pos = torch.arange(n0, n_prompt, device=device)[None]
            res = model(input_ids=torch.tensor([p_ids[n0:]], device=device), attention_mask=mask,
                        position_ids=pos, past_key_values=copy.deepcopy(prefix.cache), use_cache=True,
                        logits_to_keep=1)  # fmt: skip
            return res, mask, pos
    ids, mask = left_pad(batch, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    pos = positions_from_mask(mask)  # explicit positions: exact under left padding
    res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    return res, mask, pos


def continuation_logprobs(
    model: Any, tok: Any, prompt: str, continuations: Sequence[Sequence[int]], max_logits: int = 2**26,
    prefix: SharedPrefix | None = None,
) -> np.ndarray:  # fmt: skip
    """[continuation]: `prompts_continuations_logprobs` of one prompt (already formatted, as
    `models.format_prompt` builds it), continuations as token ids."""
    p_ids = encode_prompts(tok, [prompt])
    return prompts_continuations_logprobs(model, p_ids, continuations, tok.pad_token_id, 1, max_logits, prefix)[0]


@torch.inference_mode()
def completion_scores(
    model: Any, tok: Any, examples: Sequence[Any], end: str = "", batch_size: int = 16, max_len: int = 500
) -> list[dict[str, list]]:
    """Teacher-forced reading of each example's completion (`finetune.Example`: the prompt as
    this model sees it, the completion): per completion token, its log-prob and the model's
    argmax at the position that predicts it. Positions are those of training (`tokenize_examples`
    with the same `end` and `max_len`): position j predicts the j-th completion token."""
    device = next(model.parameters()).device
    rows = tokenize_examples(tok, list(examples), end, max_len)
    out = []
    for b in range(0, len(rows), batch_size):
        micro = rows[b : b + batch_size]
        logits, targets = completion_logits(model, micro, tok.pad_token_id, device)
        lp = torch.log_softmax(logits.float(), dim=-1)
        token_lp = lp.gather(-1, targets[:, None])[:, 0].double().cpu().tolist()
        argmax = logits.argmax(-1).cpu().tolist()
        tokens = targets.cpu().tolist()
        i = 0
        for r in micro:
            n = len(r["input_ids"]) - r["n_prompt"]
            out.append({"logprob": token_lp[i : i + n], "argmax": argmax[i : i + n], "token": tokens[i : i + n]})
            i += n
    return out


def row_examples(tok: Any, rows: Sequence[dict], system: str | None = None) -> list[Example]:
    """Training examples of prompt/completion rows, as this tokenizer formats the prompt (with `system`)."""
    return [Example(format_prompt(tok, r["prompt"], system), r["completion"]) for r in rows]


def read_rows(model: Any, tok: Any, rows: Sequence[dict], system: str | None = None,
              batch_size: int = 16) -> list[dict[str, list]]:  # fmt: skip
    """`completion_scores` of prompt/completion rows, each completion ended as in training."""
    return completion_scores(model, tok, row_examples(tok, rows, system), completion_suffix(tok), batch_size=batch_size)


def loglik_ratio(
    teacher: Any, base: Any, tok: Any, rows: Sequence[dict], teacher_system: str | None = None,
    batch_size: int = 16,
) -> list[dict[str, float]]:  # fmt: skip
    """The hidden-signal scan's score of prompt/completion rows: log p_teacher(completion |
    prompt, with `teacher_system`) - log p_base(completion | plain prompt), summed over the
    completion's tokens and per token. Teacher and base share `tok` (one base, two variants)."""
    lps = {role: [r["logprob"] for r in read_rows(model, tok, rows, system, batch_size)]
           for role, model, system in (("teacher", teacher, teacher_system), ("base", base, None))}  # fmt: skip
    return [{"llr": sum(t) - sum(b), "llr_per_token": (sum(t) - sum(b)) / max(1, len(t)), "n_tokens": len(t),
             "logprob_teacher": sum(t), "logprob_base": sum(b)} for t, b in zip(lps["teacher"], lps["base"])]  # fmt: skip
