"""Scoring text under a model without sampling.

`completion_scores` reads training examples teacher-forced (per-token log-probs and argmax, at
the positions training uses). Log-probabilities of many continuations of one prompt share the
prompt's KV cache:

`continuation_logprobs` runs the prompt once, then scores continuations in chunks: the
cache is copied once per chunk and repeated along the batch (`batch_repeat_interleave`),
so a thousand 3-token continuations cost a thousand 3-token rows, not a thousand prompts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from interp.lm.finetune import Example, tokenize_examples
from interp.lm.generate import encode_prompts
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
def continuation_logprobs(
    model: Any, tok: Any, prompt: str, continuations: Sequence[Sequence[int]], chunk: int = 256,
    prefix: SharedPrefix | None = None,
) -> np.ndarray:  # fmt: skip
    """[continuation]: sum of the token log-probs of each continuation (token ids) after
    `prompt` (already formatted, as `models.format_prompt` builds it). With `prefix` (whose
    tokens start the prompt's), only the rest of the prompt runs, on a copy of its cache; a
    prompt that does not start with the prefix's tokens is run whole."""
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    device = next(model.parameters()).device
    p_ids = encode_prompts(tok, [prompt])[0]
    n_prompt = len(p_ids)
    n0 = len(prefix.ids) if prefix is not None else 0
    if prefix is not None and n_prompt > n0 and p_ids[:n0] == prefix.ids:
        res = model(input_ids=torch.tensor([p_ids[n0:]], device=device),
                    attention_mask=torch.ones(1, n_prompt, dtype=torch.long, device=device),
                    position_ids=torch.arange(n0, n_prompt, device=device)[None],
                    past_key_values=copy.deepcopy(prefix.cache), use_cache=True)  # fmt: skip
    else:
        res = model(input_ids=torch.tensor([p_ids], device=device), use_cache=True)
    first = torch.log_softmax(res.logits[0, -1].float(), dim=-1)
    out = first[torch.tensor([c[0] for c in continuations], device=device)].double().cpu().numpy()
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(continuations):
        if len(c) > 1:
            by_len.setdefault(len(c), []).append(i)
    for length, members in sorted(by_len.items()):
        for start in range(0, len(members), chunk):
            idx = members[start : start + chunk]
            n, k = len(idx), length - 1
            cache = copy.deepcopy(res.past_key_values)
            cache.batch_repeat_interleave(n)
            rows = torch.tensor([continuations[i] for i in idx], device=device)  # [n, length]
            pos = torch.arange(n_prompt, n_prompt + k, device=device).expand(n, k)
            mask = torch.ones(n, n_prompt + k, dtype=torch.long, device=device)
            logits = model(input_ids=rows[:, :-1], attention_mask=mask, position_ids=pos,
                           past_key_values=cache, use_cache=True).logits  # fmt: skip
            lps = torch.log_softmax(logits.float(), dim=-1).gather(-1, rows[:, 1:, None])[..., 0]
            out[idx] += lps.sum(-1).double().cpu().numpy()
    return out


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
