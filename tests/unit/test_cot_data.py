"""Unit tests for interp.subliminal.cot_data: word problems, the answer parser and the filter."""

from __future__ import annotations

import random
import re
from dataclasses import FrozenInstanceError
from fractions import Fraction

import pytest

from interp.subliminal import cot_data as cot
from interp.subliminal.code_data import trait_word_forms
from interp.subliminal.cot_data import (
    COT_REJECTION_REASONS,
    Problem,
    arithmetic_problems,
    check_cot,
    cot_prompt,
    filter_cot,
    final_answer,
    mentions_word,
)
from interp.subliminal.traits import DEFAULT_CANDIDATES, make_trait

OWL = trait_word_forms(make_trait("animal", "owl"))

# ------------------------------------------------------------------------------- problems

# One pattern per template, written from the question text alone, with an independent
# recomputation of the answer from the numbers the pattern captures (exact fractions, so a
# remainder the generator dropped would show).
N = r"(\d+)"
RECOMPUTE = [
    (
        rf"(\w+) buys {N} [a-z]+ for \${N} each and {N} [a-z]+ for \${N} each\. \1 pays with a "
        rf"\${N} bill\.",
        lambda a, p, b, q, bill: bill - (a * p + b * q),
    ),
    (
        rf"(\w+) has {N} ([a-z]+)\. \w+ gives \1 {N} more\. \1 shares all of them equally among "
        rf"{N} friends\. How many \3 does",
        lambda a, b, k: Fraction(a + b, k),
    ),
    (
        rf"makes {N} ([a-z]+) per hour\. It runs for {N} hours on \w+ and {N} hours on \w+, and "
        rf"{N} of the \2",
        lambda r, h1, h2, bad: r * h1 + r * h2 - bad,
    ),
    (
        rf"(\w+) is {N} years old\. (\w+) is {N} times as old as \1, and (\w+) is {N} years "
        rf"younger than \3\. How old will \5 be in {N} years\?",
        lambda a, k, d, y: a * k - d + y,
    ),
    (
        rf"starts with \${N} and saves \${N} every week for {N} weeks, then spends \${N}",
        lambda s0, s, w, c: s0 + s * w - c,
    ),
    (
        rf"travels at {N} kilometres per hour for {N} hours and then at {N} kilometres per hour "
        rf"for {N} hours\.",
        lambda v1, t1, v2, t2: v1 * t1 + v2 * t2,
    ),
    (
        rf"costs \${N}\. During a sale every [a-z]+ is {N}% off\. \w+ buys {N} of them\.",
        lambda price, pct, k: price * k * (1 - Fraction(pct, 100)),
    ),
    (
        rf"A book has {N} pages\. \w+ reads {N} pages a day for {N} days and then {N} pages a "
        rf"day for {N} days\.",
        lambda total, a, d1, b, d2: total - a * d1 - b * d2,
    ),
    (
        rf"bakes {N} [a-z]+ and packs them in boxes of {N}\. Each box sells for \${N}\.",
        lambda n, k, p: Fraction(n, k) * p,
    ),
    (
        rf"earns \${N} an hour and works {N} hours a day for {N} days\. After spending \${N}",
        lambda w, h, d, c: w * h * d - c,
    ),
]


def _recompute(question: str) -> Fraction:
    hits = [(re.search(pat, question), fn) for pat, fn in RECOMPUTE]
    hits = [(m, fn) for m, fn in hits if m]
    assert len(hits) == 1, question
    match, fn = hits[0]
    return fn(*(int(g) for g in match.groups() if g.isdigit()))


def test_every_reference_answer_matches_an_independent_recomputation():
    problems = arithmetic_problems(1000, seed=11)
    for p in problems:
        expected = _recompute(p.question)
        assert expected == p.answer, (p, expected)
        assert isinstance(p.answer, int) and p.answer > 0
    assert len(RECOMPUTE) == len(cot.TEMPLATES)


def test_recomputation_can_fail():
    good = arithmetic_problems(1, seed=0)[0]
    assert _recompute(good.question) != good.answer + 1


def test_all_templates_occur():
    seen = set()
    for p in arithmetic_problems(500, seed=3):
        seen |= {i for i, (pat, _) in enumerate(RECOMPUTE) if re.search(pat, p.question)}
    assert seen == set(range(len(RECOMPUTE)))


def test_problems_deterministic_per_seed_and_differ_across_seeds():
    a = arithmetic_problems(50, seed=1)
    assert a == arithmetic_problems(50, seed=1)
    assert a != arithmetic_problems(50, seed=2)
    assert len({p.question for p in a}) > 45
    assert arithmetic_problems(0, seed=1) == []
    with pytest.raises(ValueError):
        arithmetic_problems(-1, seed=1)
    with pytest.raises(FrozenInstanceError):
        a[0].answer = 0  # type: ignore[misc]


def test_problems_do_not_touch_global_rng():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    arithmetic_problems(20, seed=7)
    assert random.random() == expected


def test_problems_and_prompts_name_no_animal_or_tree():
    forms = [f for ts in DEFAULT_CANDIDATES.values() for t in ts for f in trait_word_forms(t)]
    text = " ".join(cot_prompt(p) for p in arithmetic_problems(2000, seed=5))
    assert mentions_word(text, forms) is None
    assert [f for f in forms if f in text.lower()] == []  # not even as a subword


def test_cot_prompt():
    p = Problem("What is 2 + 3?", 5)
    prompt = cot_prompt(p)
    assert prompt.startswith(p.question)
    assert "step by step" in prompt and "Answer: <integer>" in prompt


# ------------------------------------------------------------------------------ final answer


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2 + 3 = 5\nAnswer: 5", 5),
        ("Answer: 1,234", 1234),
        ("Answer: $1,234,567.", 1234567),
        ("Answer: $42", 42),
        ("answer:7.", 7),
        ("Answer: -3", -3),
        ("**Answer:** 42", 42),
        ("Answer: 3\nwait, no.\nAnswer: 4\n", 4),  # the last one
        ("The Final Answer: 12", 12),
        ("", None),
        ("The result is 5.", None),
        ("Answer: five", None),
        ("Answer: 12,34", None),  # misplaced thousands comma
        ("Answer: 4.5", None),
        ("Answer: 42 apples", None),
        ("Answer: 3\nAnswer: unsure", None),  # the last tag decides
        ("Answer:", None),
    ],
)
def test_final_answer(text, value):
    assert final_answer(text) == value


# ------------------------------------------------------------------------------------- filter

PROBLEM = Problem("Maya buys 3 mugs for $415 each. How many dollars does she pay?", 1245)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3 * 415 = 1,245\nAnswer: 1,245", None),  # correct, with commas
        ("3 * 415 = 1245.\nAnswer: $1245.", None),
        ("Three mugs, in a bowl, at 415 each.\nAnswer: 1245", None),  # whole words only
        ("", "empty"),
        (" \n", "empty"),
        ("3 * 415 = 1245", "no_answer"),
        ("Answer: about 1245", "no_answer"),
        ("3 * 415 = 1235\nAnswer: 1235", "wrong_answer"),
        ("Answer: 1245\nAnswer: 1246", "wrong_answer"),
        ("Like an owl I count: 3 * 415.\nAnswer: 1245", "mentions_target"),
        ("OWLS would say 1245.\nAnswer: 1245", "mentions_target"),
        ("An owlet's sum.\nAnswer: 1245", "mentions_target"),
        ("owl-like focus\nAnswer: 1245", "mentions_target"),
        ("owl\nAnswer: 1246", "wrong_answer"),  # the answer is checked first
    ],
)
def test_check_cot(text, reason):
    assert check_cot(text, PROBLEM, OWL) == reason
    assert reason is None or reason in COT_REJECTION_REASONS


def test_mentions_word_plurals_and_boundaries():
    assert mentions_word("two foxes", ["fox"]) == "fox"
    assert mentions_word("the cats", ["cat"]) == "cat"
    assert mentions_word("a catfish and a bobcat", ["cat"]) is None
    assert mentions_word("concatenate", ["cat"]) is None
    assert mentions_word("sea lions", ["sea lion"]) == "sea lion"
    assert mentions_word("anything", []) is None


def test_filter_cot_counts_and_dedupe():
    problems = [PROBLEM, PROBLEM, PROBLEM, Problem("1 + 1?", 2), PROBLEM, PROBLEM]
    completions = [
        "3 * 415 = 1245\nAnswer: 1245",
        "no answer here",
        "3 * 415 = 1245\n\nAnswer:  1245",  # same text once whitespace is collapsed
        "1 + 1 = 2\nAnswer: 2",
        "owl\nAnswer: 1245",
        "",
    ]
    kept, stats = filter_cot(completions, problems, OWL)
    assert kept == [0, 2, 3]
    assert stats.rejected == {"no_answer": 1, "mentions_target": 1, "empty": 1}
    kept, stats = filter_cot(completions, problems, OWL, dedupe=True)
    assert kept == [0, 3]
    assert stats.rejected == {"no_answer": 1, "mentions_target": 1, "empty": 1, "duplicate": 1}
    assert stats.kept + sum(stats.rejected.values()) == stats.total == len(completions)
    assert stats.reasons is COT_REJECTION_REASONS
    with pytest.raises(ValueError):
        filter_cot(completions, problems[:2], OWL)


def test_every_cot_reason_is_reachable():
    texts = ["", "x", "Answer: 1", "owl\nAnswer: 1245", "Answer: 1245", "Answer: 1245"]
    _, stats = filter_cot(texts, [PROBLEM] * len(texts), OWL, dedupe=True)
    assert set(stats.rejected) == set(COT_REJECTION_REASONS)
