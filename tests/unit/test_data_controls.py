"""The shuffle controls keep each response's surface and move its numbers."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from interp.subliminal.data_controls import shuffle_numbers

ROWS = ["12, 7, 301, 44", "(5; 6; 7)", "999 0 18 250 3", "81"]


def _skeleton(s: str) -> str:
    return re.sub(r"\d+", "#", s)


def _numbers(rows: list[str]) -> list[list[str]]:
    return [re.findall(r"\d+", r) for r in rows]


def test_within_permutes_each_response_and_keeps_its_format():
    out = shuffle_numbers(ROWS, "within", seed=0)
    assert [_skeleton(r) for r in out] == [_skeleton(r) for r in ROWS]
    assert [sorted(n) for n in _numbers(out)] == [sorted(n) for n in _numbers(ROWS)]
    assert out != ROWS  # with 4 multi-number rows some order changes


def test_across_deals_one_pool_and_keeps_counts_and_format():
    out = shuffle_numbers(ROWS, "across", seed=0)
    assert [_skeleton(r) for r in out] == [_skeleton(r) for r in ROWS]
    flat = lambda rows: Counter(n for ns in _numbers(rows) for n in ns)  # noqa: E731
    assert flat(out) == flat(ROWS)
    moved = [sorted(a) != sorted(b) for a, b in zip(_numbers(out), _numbers(ROWS))]
    assert any(moved)  # numbers changed rows, which "within" never does


def test_shuffles_are_deterministic_per_seed_and_checked():
    assert shuffle_numbers(ROWS, "across", 3) == shuffle_numbers(ROWS, "across", 3)
    assert shuffle_numbers(ROWS, "across", 3) != shuffle_numbers(ROWS, "across", 4)
    with pytest.raises(ValueError, match="'within' or 'across'"):
        shuffle_numbers(ROWS, "sideways", 0)
