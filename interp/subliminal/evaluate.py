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

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from jaxtyping import Float

from interp.config import Fraction, PosInt, Range, Temperature
from interp.lm.generate import encode_prompts, sample_repeated
from interp.lm.models import format_prompt
from interp.lm.score import continuation_logprobs, prompts_continuations_logprobs
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


def candidate_logprobs(
    model: Any, tok: Any, prompts: list[str], candidates: list[str], batch_size: int = 64,
    progress: bool = False, max_logits: int = 2**26,
) -> Float[np.ndarray, "prompt candidate"]:  # fmt: skip
    """Sum of token log-probs of `" " + candidate` after each (already formatted) prompt, all
    candidates of a prompt batch in one forward on its repeated cache
    (`score.prompts_continuations_logprobs`)."""
    cand_ids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in candidates]
    if any(len(c) == 0 for c in cand_ids):
        raise ValueError(f"a candidate has no tokens: {[c for c, i in zip(candidates, cand_ids) if not i]}")
    return prompts_continuations_logprobs(model, encode_prompts(tok, prompts), cand_ids, tok.pad_token_id,
                                          batch_size, max_logits, progress=progress)  # fmt: skip


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
