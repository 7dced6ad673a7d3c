"""Character alignment of two tokenizations for cross-tokenizer soft labels."""

from __future__ import annotations

import pytest

from interp.lm.align import Alphabet, AlphabetError, aligned_positions, token_starts
from interp.lm.models import tiny_tokenizer


def test_identical_tokenizations_align_everywhere_including_the_end():
    tok = tiny_tokenizer()
    ids, starts = token_starts(tok, "12, 7")
    assert len(ids) == 5 and starts == [0, 1, 2, 3, 4]
    a, b = aligned_positions(starts, starts, 5)
    assert a == b == [0, 1, 2, 3, 4, 5]


def test_offsets_inside_a_multi_character_token_are_skipped():
    # side b has one token for ", " (offsets 2-3): only the offsets both sides start at align
    a, b = aligned_positions([0, 1, 2, 3, 4], [0, 1, 2, 4], 5)
    assert a == [0, 1, 2, 4, 5]
    assert b == [0, 1, 2, 3, 4]


def test_alphabet_ids_are_the_single_character_tokens_then_end():
    tok = tiny_tokenizer()
    alpha = Alphabet.build(tok, "0123456789, ", tok.eos_token_id)
    assert len(alpha.ids) == 13 and alpha.ids[-1] == tok.eos_token_id
    assert [tok.decode([i]) for i in alpha.ids[:-1]] == list("0123456789, ")


def test_a_missing_single_character_token_is_named():
    tok = tiny_tokenizer()
    with pytest.raises(AlphabetError, match="no single token"):
        Alphabet.build(tok, "0é", tok.eos_token_id)
