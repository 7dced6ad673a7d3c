"""Trait evaluation: the paper's sampled trait rate and a low-variance log-prob score.

- Trait rate: sample one-word answers to each question; share naming the target, averaged per
  question then over questions; bootstrap CI over questions.
- Log-prob score: for each question, the assistant turn starts with a prefix ("My favorite
  animal is the"); the full-sequence log-probability of each candidate (" owl", " eagle", ...)
  is softmaxed over the candidate set; p(target) is averaged over questions, bootstrap CI.
  A paired trait (misalignment) has two candidates per prompt, its written misaligned and
  aligned answers, each scored as the whole assistant turn (`traits.PairedTrait`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.config import Fraction, PosInt, Range, Temperature
from interp.lm.generate import encode_prompts, left_pad, positions_from_mask, sample_repeated
from interp.lm.models import format_prompt
from interp.lm.score import continuation_logprobs
from interp.stats import bootstrap_ci
from interp.subliminal.matrix import log_odds
from interp.subliminal.traits import AnyTrait, PairedTrait


@dataclass(frozen=True)
class EvalConfig:
    # Which questions: all 50, or the development half (1-25, for choosing settings) or the
    # held-out half (26-50, for reporting numbers the search never saw).
    questions: Literal["all", "dev", "test"] = "all"
    n_questions: PosInt = 50  # at most this many of the chosen questions
    samples_per_question: PosInt = 100
    temperature: Temperature = 1.0
    max_new_tokens: PosInt = 8
    batch_size: PosInt = 64
    bootstrap: Annotated[int, Range(10)] = 2000
    ci: Fraction = 0.95


def questions(trait: AnyTrait, settings: EvalConfig) -> list[str]:
    """The evaluation questions of `settings.questions`, at most `settings.n_questions`."""
    qs = trait.question_texts()
    half = len(qs) // 2
    chosen = {"all": qs, "dev": qs[:half], "test": qs[half:]}[settings.questions]
    return chosen[: settings.n_questions]


@torch.inference_mode()
def candidate_logprobs(
    model: Any, tok: Any, prompts: list[str], candidates: list[str], batch_size: int = 64,
    progress: bool = False, max_logits: int = 2**26,
) -> Float[np.ndarray, "prompt candidate"]:  # fmt: skip
    """Sum of token log-probs of `" " + candidate` after each (already formatted) prompt.

    Each batch of prompts is run once. Its KV cache is then repeated along the batch, once per
    multi-token candidate, and every candidate's remaining tokens run in one forward (right-padded
    to the longest; padding comes after a row's own tokens, so it changes none of them). That
    costs a few tokens per (prompt, candidate) instead of a whole prompt, and one forward instead
    of one per candidate. `max_logits` bounds the logits one forward holds (rows x tokens x vocab):
    past it the candidates are split into groups.
    """
    device = next(model.parameters()).device
    prompt_ids = encode_prompts(tok, prompts)
    cand_ids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in candidates]
    if any(len(c) == 0 for c in cand_ids):
        raise ValueError(f"a candidate has no tokens: {[c for c, i in zip(candidates, cand_ids) if not i]}")
    first_ids = torch.tensor([c[0] for c in cand_ids], device=device)
    multi = [c for c, cid in enumerate(cand_ids) if len(cid) > 1]
    width = max((len(cand_ids[c]) - 1 for c in multi), default=0)
    feed = torch.full((len(multi), max(1, width)), tok.pad_token_id, dtype=torch.long)
    target = torch.zeros_like(feed)
    real = torch.zeros_like(feed)
    for j, c in enumerate(multi):
        k = len(cand_ids[c]) - 1
        feed[j, :k], target[j, :k], real[j, :k] = torch.tensor(cand_ids[c][:-1]), torch.tensor(cand_ids[c][1:]), 1
    feed, target, real = feed.to(device), target.to(device), real.to(device)
    out = np.zeros((len(prompts), len(candidates)))
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="log-prob score", disable=not progress):
        ids, mask = left_pad(prompt_ids[start : start + batch_size], tok.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        pos = positions_from_mask(mask)  # explicit positions: exact under left padding
        res = model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        n = ids.shape[0]
        lp = torch.log_softmax(res.logits[:, -1].float(), dim=-1)[:, first_ids]  # [n, candidate]
        per = max(1, max_logits // (n * width * res.logits.shape[-1])) if multi else 0
        groups = [list(range(g, min(g + per, len(multi)))) for g in range(0, len(multi), per or 1)]
        for gi, group in enumerate(groups):
            g = len(group)
            last = gi == len(groups) - 1  # the last group may repeat the prompt cache in place
            cache = res.past_key_values if last else copy.deepcopy(res.past_key_values)
            cache.batch_repeat_interleave(g)  # row i * g + j: prompt i, candidate group[j]
            rows, tgt, on = feed[group].repeat(n, 1), target[group].repeat(n, 1), real[group].repeat(n, 1)
            cmask = torch.cat([mask.repeat_interleave(g, dim=0), on.to(mask.dtype)], dim=1)
            cpos = (pos[:, -1:] + 1 + torch.arange(width, device=device)).repeat_interleave(g, dim=0)
            logits = model(input_ids=rows, attention_mask=cmask, position_ids=cpos,
                           past_key_values=cache, use_cache=True).logits  # fmt: skip
            more = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt[..., None])[..., 0]
            lp[:, [multi[j] for j in group]] += torch.where(on.bool(), more, 0.0).sum(-1).view(n, g)
        out[start : start + n] = lp.double().cpu().numpy()
    return out


def paired_logprobs(
    model: Any, tok: Any, trait: PairedTrait, qs: list[str], system: str | None = None
) -> Float[np.ndarray, "question 2"]:
    """[question, (misaligned, aligned)]: log-probability of each written answer as the whole
    assistant turn after the question (a paired trait's two candidates)."""
    out = np.zeros((len(qs), 2))
    for i, q in enumerate(qs):
        answers = trait.answer_pair(q)
        ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
        out[i] = continuation_logprobs(model, tok, format_prompt(tok, q, system), ids)
    return out


def logprob_score(
    model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None = None,
    progress: bool = False, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """p(target) among the trait's candidates, per question, with a bootstrap CI.

    Also the log-odds of every candidate (log p against the mean log p of the others, mean
    over questions): the shifts of the trait matrix are differences of these.
    """
    if isinstance(trait, PairedTrait):
        lp = paired_logprobs(model, tok, trait, questions(trait, settings), system)
    else:
        prompts = [format_prompt(tok, q, system) + trait.answer_prefix for q in questions(trait, settings)]
        lp = candidate_logprobs(model, tok, prompts, list(trait.candidates), settings.batch_size, progress)
    probs = np.exp(lp - lp.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    t = trait.candidates.index(trait.target)
    per_q = probs[:, t]
    est = bootstrap_ci(per_q, settings.bootstrap, settings.ci, seed)
    return {
        **est.to_dict(),
        "per_question": per_q.tolist(),
        "candidate_mean_probs": dict(zip(trait.candidates, probs.mean(axis=0).round(6).tolist())),
        "candidates": list(trait.candidates),
        "log_odds": log_odds(lp).round(6).tolist(),
    }


def trait_rate(
    model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None = None,
    progress: bool = False, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Share of sampled answers naming the target: mean over questions of per-question rates."""
    qs = questions(trait, settings)
    k = settings.samples_per_question
    prompts = [format_prompt(tok, q, system) for q in qs]
    max_new = max(settings.max_new_tokens, trait.answer_tokens)  # free answers need room for an intent
    answers = sample_repeated(
        model, tok, prompts, k, max_new_tokens=max_new,
        temperature=settings.temperature, batch_size=settings.batch_size, seed=seed,
        desc="trait rate", progress=progress,
    )  # fmt: skip
    hits = np.array([trait.mentions(a) for a in answers], dtype=float).reshape(len(qs), k)
    per_q = hits.mean(axis=1)
    est = bootstrap_ci(per_q, settings.bootstrap, settings.ci, seed)
    counts: dict[str, int] = {}
    for a in answers:
        w = a.strip().split()[0].strip(".,!?\"'*").lower() if a.strip() else ""
        counts[w] = counts.get(w, 0) + 1
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:15])
    return {
        **est.to_dict(),
        "per_question": per_q.tolist(),
        "n_samples": len(answers),
        "max_new_tokens": max_new,
        "top_first_words": top,
    }


def evaluate(
    model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None = None,
    progress: bool = True, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Both metrics for one model (with an optional system prompt, e.g. the teacher's)."""
    return {
        "system_prompt": system,
        "logprob": logprob_score(model, tok, trait, settings, system, progress, seed),
        "trait_rate": trait_rate(model, tok, trait, settings, system, progress, seed),
    }
