"""Controls on the teacher's data that keep its surface and move its content: the paper's
shuffle controls (numbers permuted within a response, or across responses), loss masks over
divergence tokens (or as many random positions), and subsets of the rows chosen by a score
(the top, the bottom or a random fraction: per-example attribution), and a fraction of the rows
replaced by the control teacher's (mixing in unbiased data: a defence)."""

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


# subset name -> which rows it keeps; "scan-low" and "random-half" are the half-size originals
SUBSETS = {"scan-low": "bottom", "scan-bottom": "bottom", "scan-top": "top", "random-half": "random", "random": "random",
           "first-order-top": "top", "first-order-bottom": "bottom"}  # the first-order score: interp.subliminal.attribution


def subset_size(n: int, fraction: float | None) -> int:
    """How many of `n` rows a subset keeps: floor(fraction * n); None: half (rounded down, at
    least one). A fraction outside (0, 1) or one that keeps no row is an error naming it."""
    if fraction is None:
        return max(1, n // 2)
    if not 0 < fraction < 1:
        raise ValueError(f"subset_fraction = {fraction!r} must be in (0, 1)")
    k = int(fraction * n + 1e-9)  # 0.1 * 30 is 3.0000000000000004, 0.29 * 100 is 28.999999999999996
    if k < 1:
        raise ValueError(f"subset_fraction = {fraction!r} keeps no row of {n}; it needs >= {1 / max(n, 1):.3g}")
    return k


def rows_by_score(scores: list[float], how: str, seed: int, fraction: float | None = None) -> list[int]:
    """Row indices of `subset_size(len(scores), fraction)` rows, in data order: the highest
    scoring (`how="scan-top"`, `"first-order-top"`), the lowest (`"scan-bottom"`, `"scan-low"`,
    `"first-order-bottom"`), ties broken by index either way, or a random set (`"random"`,
    `"random-half"`, deterministic per seed)."""
    if how not in SUBSETS:
        raise ValueError(f"how must be one of {', '.join(map(repr, SUBSETS))}, got {how!r}")
    n = len(scores)
    k = subset_size(n, fraction)
    if SUBSETS[how] == "top":
        chosen = sorted(range(n), key=lambda i: (-scores[i], i))[:k]
    elif SUBSETS[how] == "bottom":
        chosen = sorted(range(n), key=lambda i: (scores[i], i))[:k]
    else:
        chosen = random.Random(seed).sample(range(n), k)
    return sorted(chosen)


def half_by_score(scores: list[float], how: str, seed: int) -> list[int]:
    """Half the rows (rounded down, at least one): `rows_by_score` with no fraction."""
    return rows_by_score(scores, how, seed)


def mix_pairs(n: int, n_control: int, fraction: float, seed: int) -> list[tuple[int, int]]:
    """Which rows a mix replaces: (trait row, control row) pairs, floor(fraction * n) of them,
    trait rows in data order, both drawn at random (deterministic per seed). A fraction outside
    (0, 1), one that replaces no row, or more rows than the control data has is an error naming it."""
    if not 0 < fraction < 1:
        raise ValueError(f"mix_control = {fraction!r} must be in (0, 1)")
    k = int(fraction * n + 1e-9)  # as subset_size: 0.1 * 30 is 3.0000000000000004
    if k < 1:
        raise ValueError(f"mix_control = {fraction!r} replaces no row of {n}; it needs >= {1 / max(n, 1):.3g}")
    if k > n_control:
        raise ValueError(f"mix_control = {fraction!r} replaces {k} of {n} rows; the control data has {n_control}")
    rng = random.Random(seed)
    return list(zip(sorted(rng.sample(range(n), k)), rng.sample(range(n_control), k)))
