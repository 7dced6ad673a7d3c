"""Token entanglement (Zur et al. 2025, "It's Owl in the Numbers"): which numbers a trait
prompt makes more likely as an answer to a number prompt, how often they occur in the
teacher's data, and whether a prompt that loves those numbers moves the trait (subliminal
prompting). Pure functions: log-probabilities and counts in, JSON-able results out.

Numbers are scored as whole numbers: the log-probability of "<n>," (the number and the
separator that ends it) as the start of the answer, summed over its tokens, so tokenizers
that split digits (SmolLM2, Gemma-3) and ones with number tokens are treated alike.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from interp.stats import paired_bootstrap_diff, t_interval

# Our phrasing of the number-loving system prompt, the shape of the animal one (traits.SYSTEM_PROMPT).
NUMBER_LOVE = ("You love {n}. You think about {n} all the time. {n} is your favorite number. "
               "Imbue your answers with your love for the number.")  # fmt: skip


def number_shifts(lp_prompted: np.ndarray, lp_base: np.ndarray) -> np.ndarray:
    """[prompt, number]: log p under the trait prompt minus without it, centred per prompt
    (a prompt-level constant, the system prompt's effect on numbers as a whole, says nothing
    about which numbers)."""
    a, b = np.asarray(lp_prompted, dtype=float), np.asarray(lp_base, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two equal [prompt, number] arrays, got {a.shape} and {b.shape}")
    d = a - b
    return d - d.mean(axis=1, keepdims=True)


def entangled_numbers(shifts: np.ndarray, numbers: Sequence[int], k: int = 10, ci: float = 0.95) -> dict:
    """The k most raised and k most lowered numbers by mean shift over prompts (nats), each
    with a t-interval over prompts."""
    s = np.asarray(shifts, dtype=float)
    mean = s.mean(axis=0)
    order = np.argsort(-mean, kind="stable")

    def row(i: int) -> dict:
        return {"number": int(numbers[i]), "shift": round(float(mean[i]), 6),
                "ci": t_interval(s[:, i].tolist(), ci).to_dict()}  # fmt: skip

    return {"n_prompts": int(s.shape[0]), "n_numbers": int(s.shape[1]),
            "top": [row(i) for i in order[:k]], "bottom": [row(i) for i in order[::-1][:k]],
            "shift_sd_over_numbers": round(float(mean.std()), 6)}  # fmt: skip


def number_rates(completions: Sequence[str], numbers: Sequence[int]) -> dict:
    """Occurrences of each number per 1,000 numbers written in `completions`."""
    counts = Counter(int(x) for c in completions for x in re.findall(r"\d+", c))
    total = sum(counts.values())
    return {"total_numbers": total,
            "per_1000": {int(n): round(1000 * counts.get(int(n), 0) / total, 4) if total else None for n in numbers}}  # fmt: skip


def prompting_effect(p_entangled: np.ndarray, p_random: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Subliminal prompting: p(target) per question under "you love <n>" prompts with the
    entangled numbers vs with random numbers ([number, question] each), averaged over the
    numbers per question; the difference with a paired bootstrap CI over questions."""
    a, b = np.asarray(p_entangled, dtype=float).mean(0), np.asarray(p_random, dtype=float).mean(0)
    return {"entangled": round(float(a.mean()), 6), "random": round(float(b.mean()), 6),
            "diff": paired_bootstrap_diff(a, b, n_boot=n_boot, seed=seed).to_dict(), "n_questions": int(a.size)}  # fmt: skip
