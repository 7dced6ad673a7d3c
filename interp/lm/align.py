"""Soft labels across tokenizers: distributions over a small character alphabet, aligned by characters.

Two models with different tokenizers (SmolLM2 and Gemma-3) cannot compare next-token
distributions directly. On number data they can compare next-*character* distributions over
the number-format alphabet (digits, separator characters, end of answer): at every character
offset where both tokenizations start a token, each model's logits restricted to its own
single-character tokens of the alphabet (plus its end-of-turn token) give a distribution over
the same outcomes. Offsets inside a multi-character token of either side are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class AlphabetError(ValueError):
    """A tokenizer lacks a single-character token for some character of the alphabet."""


@dataclass(frozen=True)
class Alphabet:
    """One tokenizer's ids for each outcome: the alphabet's characters in order, then END."""

    chars: str
    ids: tuple[int, ...]  # len(chars) + 1

    @classmethod
    def build(cls, tok: Any, chars: str, end_id: int) -> Alphabet:
        ids = []
        for ch in chars:
            enc = tok(ch, add_special_tokens=False)["input_ids"]
            if len(enc) != 1 or tok.decode(enc) != ch:  # absent, split, or <unk>
                name = getattr(tok, "name_or_path", type(tok).__name__)
                raise AlphabetError(
                    f"tokenizer {name!r} has no single token for {ch!r} (got {enc}); "
                    "cross-tokenizer distillation needs one token per alphabet character"
                )
            ids.append(enc[0])
        return cls(chars, (*ids, end_id))


def token_starts(tok: Any, text: str) -> tuple[list[int], list[int]]:
    """Token ids of `text` (no specials) and the character offset where each token starts."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [start for start, _ in enc["offset_mapping"]]


def aligned_positions(
    starts_a: Sequence[int], starts_b: Sequence[int], text_len: int
) -> tuple[list[int], list[int]]:
    """Indices (into each side's completion positions, END last) that start at the same offset.

    Completion position j predicts token j, which starts at `starts[j]`; position
    len(starts) predicts the end of the answer, at offset `text_len`.
    """
    a = {off: j for j, off in enumerate([*starts_a, text_len])}
    b = {off: j for j, off in enumerate([*starts_b, text_len])}
    common = sorted(set(a) & set(b))
    return [a[o] for o in common], [b[o] for o in common]
