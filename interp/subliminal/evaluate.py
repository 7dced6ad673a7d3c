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
    # LoRA students of one base are evaluated stacked, this many in one pass (`evaluate_many`);
    # 1 evaluates one at a time. An execution choice: not part of a stage's key
    stack: PosInt = 32
    # questions asked with the chat template's own system prompt where the model has none (the
    # base and students; SmolLM2 inserts one); false: no system turn at all
    default_system_prompt: bool = True

    def key(self) -> dict[str, Any]:
        """The settings as they enter a stage's key (`default_system_prompt` only when false,
        so keys from before it existed stay valid)."""
        out = {k: v for k, v in self.__dict__.items() if k != "stack"}
        if out["default_system_prompt"]:
            del out["default_system_prompt"]
        return out


def questions(trait: AnyTrait, settings: EvalConfig) -> list[str]:
    """The evaluation questions of `settings.questions`, at most `settings.n_questions`."""
    qs = trait.question_texts()
    half = len(qs) // 2
    chosen = {"all": qs, "dev": qs[:half], "test": qs[half:]}[settings.questions]
    return chosen[: settings.n_questions]


def candidate_logprobs(
    model: Any, tok: Any, prompts: list[str], candidates: list[str], batch_size: int = 64,
    progress: bool = False, max_logits: int = 2**26, blocks: int = 1,
) -> Float[np.ndarray, "prompt candidate"]:  # fmt: skip
    """Sum of token log-probs of `" " + candidate` after each (already formatted) prompt, all
    candidates of a prompt batch in one forward on its repeated cache
    (`score.prompts_continuations_logprobs`); [block, prompt, candidate] for `blocks` stacked students."""
    cand_ids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in candidates]
    if any(len(c) == 0 for c in cand_ids):
        raise ValueError(f"a candidate has no tokens: {[c for c, i in zip(candidates, cand_ids) if not i]}")
    return prompts_continuations_logprobs(model, encode_prompts(tok, prompts), cand_ids, tok.pad_token_id,
                                          batch_size, max_logits, progress=progress, blocks=blocks)  # fmt: skip


def paired_logprobs(
    model: Any, tok: Any, trait: PairedTrait, qs: list[str], system: str | None = None, default_system: bool = True
) -> Float[np.ndarray, "question 2"]:
    """[question, (misaligned, aligned)]: log-probability of each written answer as the whole
    assistant turn after the question (a paired trait's two candidates)."""
    out = np.zeros((len(qs), 2))
    for i, q in enumerate(qs):
        answers = trait.answer_pair(q)
        ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
        out[i] = continuation_logprobs(model, tok, format_prompt(tok, q, system, default_system=default_system), ids)
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
        lp = paired_logprobs(model, tok, trait, questions(trait, settings), system, settings.default_system_prompt)
    else:
        lp = candidate_logprobs(model, tok, _scored_prompts(tok, trait, settings, system), list(trait.candidates),
                                settings.batch_size, progress)  # fmt: skip
    return _logprob_result(lp, trait, settings, seed)


def _scored_prompts(tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None) -> list[str]:
    return [format_prompt(tok, q, system, default_system=settings.default_system_prompt) + trait.answer_prefix
            for q in questions(trait, settings)]


def _logprob_result(lp: np.ndarray, trait: AnyTrait, settings: EvalConfig, seed: int) -> dict[str, Any]:
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


def _sampled(model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None, progress: bool,
             seed: int, blocks: int = 1) -> tuple[list[str], int]:  # fmt: skip
    """The sampled answers (block-major for stacked students) and the token budget they had."""
    prompts = [format_prompt(tok, q, system, default_system=settings.default_system_prompt)
               for q in questions(trait, settings)]
    max_new = max(settings.max_new_tokens, trait.answer_tokens)  # free answers need room for an intent
    answers = sample_repeated(
        model, tok, prompts, settings.samples_per_question, max_new_tokens=max_new,
        temperature=settings.temperature, batch_size=settings.batch_size, seed=seed,
        desc="trait rate", progress=progress, blocks=blocks,
    )  # fmt: skip
    return answers, max_new


def trait_rate(
    model: Any, tok: Any, trait: AnyTrait, settings: EvalConfig, system: str | None = None,
    progress: bool = False, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Share of sampled answers naming the target: mean over questions of per-question rates."""
    answers, max_new = _sampled(model, tok, trait, settings, system, progress, seed)
    return _rate_result(answers, max_new, trait, settings, seed)


def _rate_result(answers: list[str], max_new: int, trait: AnyTrait, settings: EvalConfig, seed: int) -> dict[str, Any]:
    k = settings.samples_per_question
    hits = np.array([trait.mentions(a) for a in answers], dtype=float).reshape(-1, k)
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


def evaluate_many(
    model: Any, tok: Any, traits: list[AnyTrait], settings: EvalConfig, progress: bool = True, seed: int = 0
) -> list[dict[str, Any]]:
    """`evaluate` of each of len(traits) stacked students of `model` (`interp.lm.stacked`; block
    k is student k, scored on traits[k]), no system prompt, in one batched pass per metric.
    The traits must share their questions and candidates (one trait kind, different targets):
    each student's numbers are what `evaluate` gives it alone, to float tolerance."""
    ref = traits[0]
    if any(isinstance(t, PairedTrait) for t in traits) or any(
        t.candidates != ref.candidates or questions(t, settings) != questions(ref, settings) for t in traits
    ):
        raise ValueError("stacked evaluation needs one animal-style trait kind: the same questions and candidates")
    k = len(traits)
    lp = candidate_logprobs(model, tok, _scored_prompts(tok, ref, settings, None), list(ref.candidates),
                            settings.batch_size, progress, blocks=k)  # fmt: skip
    lp = lp.reshape(k, -1, len(ref.candidates))
    answers, max_new = _sampled(model, tok, ref, settings, None, progress, seed, blocks=k)
    n = len(answers) // k
    return [
        {"system_prompt": None, "logprob": _logprob_result(lp[i], t, settings, seed),
         "trait_rate": _rate_result(answers[i * n : (i + 1) * n], max_new, t, settings, seed)}
        for i, t in enumerate(traits)
    ]  # fmt: skip
