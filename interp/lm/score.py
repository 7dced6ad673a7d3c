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
from typing import Any

import numpy as np
import torch

from interp.lm.finetune import completion_logits, tokenize_examples
from interp.lm.generate import encode_prompts


@torch.inference_mode()
def continuation_logprobs(
    model: Any, tok: Any, prompt: str, continuations: Sequence[Sequence[int]], chunk: int = 256
) -> np.ndarray:
    """[continuation]: sum of the token log-probs of each continuation (token ids) after
    `prompt` (already formatted, as `models.format_prompt` builds it)."""
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    device = next(model.parameters()).device
    ids = torch.tensor([encode_prompts(tok, [prompt])[0]], device=device)
    n_prompt = ids.shape[1]
    res = model(input_ids=ids, use_cache=True)
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
