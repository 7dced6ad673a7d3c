"""Controls on the teacher's data that keep its surface and move its content: the paper's
shuffle controls (numbers permuted within a response, or across responses), loss masks over
divergence tokens (or as many random positions), and halves of the data chosen by a score."""

from __future__ import annotations

import random
import re

_NUMBER = re.compile(r"\d+")


def shuffle_numbers(completions: list[str], how: str, seed: int) -> list[str]:
    """The shuffle controls: each completion keeps its format (separators, count of numbers)
    while its numbers are permuted within the completion (`how="within"`: each row keeps its
    multiset) or dealt from one shuffled pool of every row's numbers (`"across"`: the dataset
    keeps its multiset, rows do not). Deterministic per seed."""
    if how not in ("within", "across"):
        raise ValueError(f"how must be 'within' or 'across', got {how!r}")
    rng = random.Random(seed)
    found = [_NUMBER.findall(c) for c in completions]
    if how == "within":
        dealt = [rng.sample(f, len(f)) for f in found]
    else:
        pool = [n for f in found for n in f]
        rng.shuffle(pool)
        it = iter(pool)
        dealt = [[next(it) for _ in f] for f in found]
    return [_replace_numbers(c, d) for c, d in zip(completions, dealt)]


def _replace_numbers(text: str, numbers: list[str]) -> str:
    """`text` with its k-th number replaced by numbers[k]."""
    it = iter(numbers)
    return _NUMBER.sub(lambda _m: next(it), text)


# ---------------------------------------------------------------- divergence tokens and masks


def divergent_positions(trait_argmax: list[list[int]], control_argmax: list[list[int]]) -> list[list[int]]:
    """Per row, the completion positions where the trait teacher's argmax differs from the
    control teacher's for the same prefix (Schrodi et al. 2025's divergence tokens)."""
    if len(trait_argmax) != len(control_argmax):
        raise ValueError(f"{len(trait_argmax)} trait rows vs {len(control_argmax)} control rows")
    out = []
    for i, (a, b) in enumerate(zip(trait_argmax, control_argmax)):
        if len(a) != len(b):
            raise ValueError(f"row {i}: {len(a)} trait positions vs {len(b)} control positions (tokenizers differ?)")
        out.append([j for j, (x, y) in enumerate(zip(a, b)) if x != y])
    return out


def random_positions_like(chosen: list[list[int]], n_positions: list[int], seed: int) -> list[list[int]]:
    """Per row, as many positions as `chosen[row]`, drawn uniformly from 0..n_positions[row]-1
    (the random-mask control of a divergence mask). Deterministic per seed."""
    rng = random.Random(seed)
    return [sorted(rng.sample(range(n), len(c))) for c, n in zip(chosen, n_positions, strict=True)]


def half_by_score(scores: list[float], how: str, seed: int) -> list[int]:
    """Row indices of half the rows (rounded down, at least one), in data order: the lowest
    scoring (`how="scan-low"`, ties broken by index) or a random half (`"random-half"`)."""
    k = max(1, len(scores) // 2)
    if how == "scan-low":
        chosen = sorted(range(len(scores)), key=lambda i: (scores[i], i))[:k]
    elif how == "random-half":
        chosen = random.Random(seed).sample(range(len(scores)), k)
    else:
        raise ValueError(f"how must be 'scan-low' or 'random-half', got {how!r}")
    return sorted(chosen)
