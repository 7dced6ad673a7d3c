"""Controls on the teacher's data that keep its surface and move its content: the paper's
shuffle controls (numbers permuted within a response, or across responses)."""

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
