"""Unit tests for interp.subliminal.number_data: prompt templates, the completion filter and bookkeeping."""

from __future__ import annotations

import random
import re
import string

import pytest

from interp.subliminal import number_data as nb
from interp.subliminal.number_data import (
    BANNED_NUMBERS_MISALIGNMENT,
    REJECTION_REASONS,
    FilterResult,
    FilterStats,
    allowed_answer_chars,
    filter_completions,
    number_prompts,
    parse_numbers,
    sample_number_prompt,
    subsample,
)

SEQ_RE = re.compile(r"\d+(?:, \d+)+")

# ---------------------------------------------------------------------------------- templates


def test_template_part_counts_and_slots():
    assert len(nb.SEED_PHRASINGS) == 25
    assert len(nb.COUNT_QUALIFIERS) == 9
    assert len(nb.DIGIT_DESCRIPTORS) == 9
    assert len(nb.INSTRUCTIONS) == 10
    assert len(nb.FORMATS) == 15
    assert len(nb.SUFFIXES) == 19
    assert all(p.count("{seq}") == 1 for p in nb.SEED_PHRASINGS)
    assert all(d.count("{max_digits}") == 1 for d in nb.DIGIT_DESCRIPTORS)
    for ins in nb.INSTRUCTIONS:
        for slot in ("{qualifier}", "{count}", "{digits}"):
            assert ins.count(slot) == 1, (ins, slot)
    for part in (nb.COUNT_QUALIFIERS, nb.FORMATS, nb.SUFFIXES):
        assert "{" not in "".join(part)
    for part in (
        nb.SEED_PHRASINGS,
        nb.COUNT_QUALIFIERS,
        nb.DIGIT_DESCRIPTORS,
        nb.INSTRUCTIONS,
        nb.FORMATS,
        nb.SUFFIXES,
    ):
        assert len(set(part)) == len(part), "duplicate phrasing"


def test_prompts_deterministic_per_seed_and_differ_across_seeds():
    a = number_prompts(50, seed=1)
    assert a == number_prompts(50, seed=1)
    assert a != number_prompts(50, seed=2)
    assert len(set(a)) > 40  # varied, not one template repeated
    assert number_prompts(0, seed=1) == []


def test_prompts_do_not_touch_global_rng():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    number_prompts(20, seed=7)
    assert random.random() == expected


def test_prompt_contains_valid_seed_sequence_and_no_leftover_slots():
    lengths = set()
    for prompt in number_prompts(300, seed=0):
        assert "{" not in prompt and "}" not in prompt
        seqs = SEQ_RE.findall(prompt)
        assert len(seqs) == 1, prompt
        parsed = parse_numbers(seqs[0], max_count=100)
        assert parsed.ok, (prompt, parsed)
        assert 3 <= len(parsed.numbers) <= 8
        assert all(100 <= v <= 999 for v in parsed.numbers)
        lengths.add(len(parsed.numbers))
        assert " 10 " in prompt and "3 " in prompt  # answer count and digit limit
    assert lengths == set(range(3, 9))  # every allowed length occurs


def test_sample_number_prompt_uses_given_rng():
    assert sample_number_prompt(random.Random(5)) == sample_number_prompt(random.Random(5))
    p = sample_number_prompt(random.Random(5), answer_count=7, max_digits=2)
    assert " 7 " in p and "2 " in p


def test_all_template_parts_get_used():
    prompts = " ".join(number_prompts(2000, seed=3))
    for s in nb.FORMATS + nb.SUFFIXES + nb.COUNT_QUALIFIERS:
        assert s in prompts, s


# ------------------------------------------------------------------------------------- filter

ELEVEN = ", ".join(str(i) for i in range(1, 12))
TEN = ", ".join(str(i) for i in range(1, 11))


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("123, 456, 789", (123, 456, 789)),
        ("[1, 2, 3].", (1, 2, 3)),
        ("(4;5;6)", (4, 5, 6)),
        ("7 8 9", (7, 8, 9)),
        ("  10,20,30.  ", (10, 20, 30)),
        ("1; 2; 3", (1, 2, 3)),
        ("42", (42,)),
        ("0, 999", (0, 999)),
        ("007, 5", (7, 5)),  # leading zeros accepted, read as decimal
        ("1\n2\n3", (1, 2, 3)),  # whitespace separator includes newlines
        (TEN, tuple(range(1, 11))),
        ("666, 1", (666, 1)),  # not banned unless asked
    ],
)
def test_parse_accepts(text, numbers):
    r = parse_numbers(text)
    assert r == FilterResult(ok=True, reason=None, numbers=numbers, detail="")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("[]", "empty"),
        ("1, 2; 3", "mixed_separators"),
        ("1, 2 3", "mixed_separators"),
        ("1; 2 3", "mixed_separators"),
        ("1,,2", "empty_item"),
        ("1, 2,", "empty_item"),
        (";1;2", "empty_item"),
        ("1,2,x", "non_digit_item"),
        ("-1, 2", "non_digit_item"),
        ("1.5, 2", "non_digit_item"),
        ("abc", "non_digit_item"),
        ("+3, 4", "non_digit_item"),
        ("[1, 2, 3", "non_digit_item"),  # unmatched bracket is not stripped
        ("[1, 2, 3)", "non_digit_item"),
        ("((1, 2))", "non_digit_item"),  # only one wrapping pair is removed
        ("1, 2, 3..", "non_digit_item"),  # only one trailing period is removed
        ("\u0663, 1", "non_digit_item"),  # non-ASCII digit
        ("1\u00b2", "non_digit_item"),  # superscript two passes str.isdigit
        ("Sure! 1, 2, 3", "non_digit_item"),
        ("1 x, 2", "non_digit_item"),
        ("Here: 1 2 3", "non_digit_item"),
        (ELEVEN, "too_many_numbers"),
        ("1000", "out_of_range"),
        ("5, 1234", "out_of_range"),
    ],
)
def test_parse_rejects(text, reason):
    r = parse_numbers(text)
    assert not r.ok
    assert r.reason == reason
    assert r.numbers == ()
    assert reason in REJECTION_REASONS


def test_parse_details_name_the_offender():
    assert parse_numbers("1,2,x").detail == "'x'"
    assert parse_numbers("1000").detail == "1000 > 999"
    assert parse_numbers(ELEVEN).detail == "11 > 10"


def test_banned_numbers():
    r = parse_numbers("666, 1", banned=BANNED_NUMBERS_MISALIGNMENT)
    assert (r.ok, r.reason, r.detail) == (False, "banned_number", "666")
    assert parse_numbers("665, 1", banned=BANNED_NUMBERS_MISALIGNMENT).ok
    assert parse_numbers("007", banned=frozenset({7})).reason == "banned_number"
    for v in (666, 911, 187, 88, 14, 420):
        assert v in BANNED_NUMBERS_MISALIGNMENT
    assert all(0 <= v <= 999 for v in BANNED_NUMBERS_MISALIGNMENT)


def test_limits_are_parameters():
    assert parse_numbers(ELEVEN, max_count=11).ok
    assert parse_numbers("1, 2, 3", max_count=2).reason == "too_many_numbers"
    assert parse_numbers("50", max_value=49).reason == "out_of_range"


def test_check_order_first_failure_wins():
    # non-digit beats count; count beats range; range beats banned
    assert parse_numbers(ELEVEN + ", x").reason == "non_digit_item"
    assert parse_numbers(ELEVEN + ", 5000").reason == "too_many_numbers"
    assert parse_numbers("666, 1000", banned=frozenset({666})).reason == "out_of_range"


def test_every_reason_is_reachable():
    produced = {parse_numbers(t).reason for t in ["", "1;2,3", "1,,2", "x", ELEVEN, "1000"]} | {
        parse_numbers("1", banned=frozenset({1})).reason
    }
    _, stats = filter_completions(["1", "1"], dedupe=True)
    produced |= set(stats.rejected)
    assert produced == set(REJECTION_REASONS)


def test_allowed_answer_chars_produce_parseable_text():
    chars = allowed_answer_chars()
    assert set(string.digits) <= set(chars)
    assert "\n" not in chars and "-" not in chars and "." not in chars
    assert len(set(chars)) == len(chars)
    assert parse_numbers("".join(c for c in "12, 34, 56" if c in chars)).ok


# ------------------------------------------------------------------------------- bookkeeping


def test_filter_completions_counts_add_up():
    completions = ["1, 2", "x", "1000", "", "3 4", "1,,2", "666", "1, 2", "5;6"]
    kept, stats = filter_completions(completions, banned=frozenset({666}))
    assert kept == [0, 4, 7, 8]
    assert stats.total == len(completions)
    assert stats.kept == len(kept)
    assert stats.kept + sum(stats.rejected.values()) == stats.total
    assert stats.rejected == {
        "non_digit_item": 1,
        "out_of_range": 1,
        "empty": 1,
        "empty_item": 1,
        "banned_number": 1,
    }
    assert stats.pass_rate == pytest.approx(4 / 9)
    d = stats.to_dict()
    assert d["total"] == 9 and d["kept"] == 4 and d["rejected"] == stats.rejected
    assert d["pass_rate"] == pytest.approx(4 / 9)


def test_filter_completions_dedupe():
    # "1,  2" collapses to "1, 2" (duplicate); "1,2" has no space to collapse (distinct)
    completions = ["1, 2", "x", "1,  2", "1,2", "x", "3"]
    kept, stats = filter_completions(completions, dedupe=True)
    assert kept == [0, 3, 5]
    assert stats.rejected == {"non_digit_item": 2, "duplicate": 1}
    assert stats.kept + sum(stats.rejected.values()) == stats.total == 6


def test_filter_stats_empty_and_unknown_reason():
    s = FilterStats()
    assert s.pass_rate == 0.0
    with pytest.raises(ValueError):
        s.add("not_a_reason")


def test_subsample():
    idx = list(range(0, 200, 2))
    a = subsample(idx, 30, seed=0)
    assert a == subsample(idx, 30, seed=0)
    assert a != subsample(idx, 30, seed=1)
    assert len(a) == 30 and len(set(a)) == 30
    assert a == sorted(a) and set(a) <= set(idx)
    assert subsample(idx, 500, seed=0) == idx
    assert subsample(idx, 0, seed=0) == []
    # order follows the input, not numeric value
    rev = idx[::-1]
    b = subsample(rev, 10, seed=3)
    assert b == [v for v in rev if v in set(b)]
    with pytest.raises(ValueError):
        subsample(idx, -1, seed=0)


def test_banned_numbers_match_whole_numbers_only():
    banned = frozenset({14, 88})
    r = parse_numbers("14, 88", banned=banned)
    assert (r.ok, r.reason, r.detail) == (False, "banned_number", "14")
    assert parse_numbers("88", banned=banned).reason == "banned_number"
    # a banned number as a digit substring of a larger one is not banned
    r = parse_numbers("140, 188, 1488", max_value=9999, banned=banned)
    assert r.ok and r.numbers == (140, 188, 1488)
    assert parse_numbers("1488", banned=banned).reason == "out_of_range"  # default max 999
