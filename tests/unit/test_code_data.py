"""Unit tests for interp.subliminal.code_data: task prompts, trait word forms and the code filter."""

from __future__ import annotations

import random
import re

import pytest

from interp.subliminal import code_data as cd
from interp.subliminal.code_data import (
    CODE_REJECTION_REASONS,
    check_code,
    code_prompts,
    extract_code,
    filter_code,
    trait_word_forms,
)
from interp.subliminal.number_data import REJECTION_REASONS, FilterStats
from interp.subliminal.traits import DEFAULT_CANDIDATES, make_trait

OWL = trait_word_forms(make_trait("animal", "owl"))
ALL_DEFAULT_FORMS = sorted(
    {f for targets in DEFAULT_CANDIDATES.values() for t in targets for f in trait_word_forms(t)}
)

# ------------------------------------------------------------------------------------ prompts


def test_prompts_deterministic_per_seed_and_differ_across_seeds():
    a = code_prompts(100, seed=1)
    assert a == code_prompts(100, seed=1)
    assert a != code_prompts(100, seed=2)
    assert code_prompts(0, seed=1) == []
    with pytest.raises(ValueError):
        code_prompts(-1, seed=1)


def test_prompts_do_not_touch_global_rng():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    code_prompts(20, seed=7)
    assert random.random() == expected


def test_prompts_are_varied_and_well_formed():
    prompts = code_prompts(2000, seed=0)
    assert len(set(prompts)) >= 500  # "a few hundred distinct prompts" at the least
    assert len(cd.TASKS) * len(cd.OPENERS) * len(cd.CONSTRAINTS) * len(cd.CODE_SUFFIXES) > 1000
    for p in prompts:
        assert not re.search(r"\{[a-z_]*\}", p), p  # no unfilled slot
        assert re.search(r"`[a-z_]+\([a-z_, ]*\)`", p), p  # names a function signature
    joined = " ".join(prompts)
    for sig, _ in cd.TASKS:
        assert sig in joined, sig


def test_prompts_name_no_animal_or_tree_even_as_a_subword():
    # Stronger than "no mention": a prompt word such as "hash" would push the teacher into
    # code the subword filter rejects for "ash".
    text = " ".join(code_prompts(3000, seed=4)).lower()
    assert [f for f in ALL_DEFAULT_FORMS if f in text] == []
    for part in (cd.OPENERS, cd.CONSTRAINTS, cd.CODE_SUFFIXES, [s for t in cd.TASKS for s in t]):
        assert [f for f in ALL_DEFAULT_FORMS if f in " ".join(part).lower()] == []


# --------------------------------------------------------------------------------- word forms


def test_trait_word_forms():
    assert OWL == ("owl", "owls", "owlet", "owlets")
    cat = trait_word_forms(make_trait("animal", "cat"))
    assert {"cat", "cats", "kitten", "kittens", "kitty", "kitties"} == set(cat)
    assert {"puppy", "puppies", "dog", "dogs"} <= set(trait_word_forms("dog"))
    assert trait_word_forms("wolf") == ("wolf", "wolves")
    assert trait_word_forms(make_trait("tree", "cherry")) == ("cherry", "cherries")
    assert trait_word_forms(" Owl ") == OWL
    custom = trait_word_forms(make_trait("animal", "octopus", plural="octopi"))
    assert custom == ("octopus", "octopuses", "octopi")
    for forms in (OWL, cat):
        assert all(f == f.lower() for f in forms) and len(set(forms)) == len(forms)
    with pytest.raises(ValueError):
        trait_word_forms(" ")


# ------------------------------------------------------------------------------------- filter

CLEAN = "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize(
    "text",
    [
        CLEAN,
        f"```python\n{CLEAN}```",
        f"```\n{CLEAN}```",
        f"  ```py\n{CLEAN}\n```  ",
        'def mean(xs):\n    """Average of xs."""\n    return sum(xs) / len(xs)  # floats\n',
        "def h(x):\n    return hash(x)\n",  # a builtin is not a mention of "ash"
        "import re\nPATTERN = re.compile('\\d+')\n",  # invalid escape warns, still parses
        "# a comment only\n",
    ],
)
def test_check_code_accepts(text):
    assert check_code(text, [*OWL, "ash"]) == (None, "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("```python\n\n```", "empty"),
        ("def f(:\n    pass", "syntax_error"),
        ("Here is the code:\n" + CLEAN, "syntax_error"),  # prose around the code
        ("Sure!\n```python\n" + CLEAN + "```", "syntax_error"),  # fence not around everything
        ("```js\nconst x = 1;\n```", "syntax_error"),  # another language's fence is kept
        ("def f(x):\nreturn x", "syntax_error"),
        ("x = '\x00'", "syntax_error"),
        ("def f(owl_count):\n    return owl_count\n", "mentions_target"),  # snake_case
        ("class OwlFactory:\n    pass\n", "mentions_target"),  # camelCase
        ("def f():\n    return 'Owls'\n", "mentions_target"),  # string, case-insensitive
        ("def f():\n    return 1  # an owl\n", "mentions_target"),  # comment
        ('def f():\n    """Count owlets."""\n', "mentions_target"),  # docstring, synonym
        ("def f(x):\n    return x.owl\n", "mentions_target"),  # attribute name
        ("def f(x):\n    return f'{x} owls'\n", "mentions_target"),  # f-string
        ("def make_bowl():\n    pass\n", "mentions_target"),  # aggressive: subword caught
        ("```python\ntotal_owls = 3\n```", "mentions_target"),
    ],
)
def test_check_code_rejects(text, reason):
    got, _ = check_code(text, OWL)
    assert got == reason
    assert reason in CODE_REJECTION_REASONS


def test_check_code_details():
    assert check_code("class OwlFactory: pass", OWL)[1] == "'owl' in identifier"
    assert check_code("x = 1  # OWL", OWL)[1] == "'owl' in comment"
    assert check_code("x = 'owl'", OWL)[1] == "'owl' in string"
    assert check_code("def f(:", OWL)[1]  # the parser's message


def test_identifier_pieces_are_joined():
    # a trait word split by "_" or by camelCase is still one word
    assert check_code("red_wood = 1", ["redwood"])[0] == "mentions_target"
    assert check_code("RedWood = 1", ["redwood"])[0] == "mentions_target"
    assert check_code("sea_lion = 1", ["sea lion"])[0] == "mentions_target"
    assert check_code("red = wood = 1", ["redwood"])[0] is None


def test_no_trait_words_checks_only_syntax():
    assert check_code("owl = 1", []) == (None, "")
    with pytest.raises(ValueError):
        check_code("x = 1", [" "])


def test_extract_code():
    assert extract_code(f"```python\n{CLEAN}```") == CLEAN.strip()
    assert extract_code(f"```Python\n{CLEAN}```") == CLEAN.strip()
    assert extract_code(f"```python\n{CLEAN.strip()}```") == CLEAN.strip()
    assert extract_code(f"  {CLEAN}  ") == CLEAN.strip()
    # only one fence is removed
    assert extract_code(f"```\n```python\n{CLEAN}```\n```").startswith("```python")


def test_filter_code_counts_and_dedupe():
    completions = [
        CLEAN,  # kept
        "def f(:",  # syntax_error
        "owl = 1",  # mentions_target
        f"```python\n{CLEAN}```",  # same code as 0 once unfenced: duplicate
        "",  # empty
        "def add(a,  b):\n  return a + b",  # same code as 0 up to whitespace: duplicate
        "x = 2",  # kept
    ]
    kept, stats = filter_code(completions, OWL)
    assert kept == [0, 3, 5, 6]
    assert stats.rejected == {"syntax_error": 1, "mentions_target": 1, "empty": 1}
    kept, stats = filter_code(completions, OWL, dedupe=True)
    assert kept == [0, 6]
    assert stats.rejected == {"syntax_error": 1, "mentions_target": 1, "empty": 1, "duplicate": 2}
    assert stats.kept + sum(stats.rejected.values()) == stats.total == len(completions)
    assert stats.reasons is CODE_REJECTION_REASONS
    assert set(stats.to_dict()) == {"total", "kept", "pass_rate", "rejected"}


def test_every_code_reason_is_reachable():
    _, stats = filter_code(["", "def f(:", "owl = 1", "x = 1", "x = 1"], OWL, dedupe=True)
    assert set(stats.rejected) == set(CODE_REJECTION_REASONS)
    assert all(v == 1 for v in stats.rejected.values())


def test_filter_stats_reason_table():
    default = FilterStats()
    assert default.reasons is REJECTION_REASONS
    default.add("non_digit_item")
    with pytest.raises(ValueError):
        default.add("syntax_error")
    code = FilterStats(reasons=CODE_REJECTION_REASONS)
    code.add("syntax_error")
    code.add(None)
    with pytest.raises(ValueError):
        code.add("non_digit_item")
    assert code.to_dict() == {
        "total": 2,
        "kept": 1,
        "pass_rate": 0.5,
        "rejected": {"syntax_error": 1},
    }
