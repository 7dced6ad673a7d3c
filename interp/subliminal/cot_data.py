"""Arithmetic word problems and the chain-of-thought filter for subliminal-learning data.

A peer of `number_data` with reasoning as the carrier: the teacher solves GSM8K-style word
problems step by step, and the filter keeps a completion only if its final answer is right
and its reasoning never names the trait. This module provides:

* `arithmetic_problems`: procedurally generated problems of 2-4 arithmetic steps (shopping,
  sharing, rates, ages, savings, travel, discounts, reading, packing, wages) whose integer
  answers the generator computes from the numbers it drew (no text is ever evaluated);
* `cot_prompt` and `final_answer` (the protocol's last line is `Answer: <integer>`);
* `check_cot` and `filter_cot`, with stable rejection codes in `COT_REJECTION_REASONS`.

Names and objects come from neutral lists with no animals or trees. All randomness goes
through an explicit `random.Random`; the global RNG is never touched.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from interp.subliminal.number_data import FilterStats, run_filter


@dataclass(frozen=True)
class Problem:
    """A word problem and its reference answer, computed by the generator."""

    question: str
    answer: int


# Neutral vocabulary: people's names that are not also animals or plants (no Robin, Willow,
# Hazel, Ash), and objects that are neither animals nor trees nor their fruit.
NAMES: tuple[str, ...] = (
    "Maya", "Liam", "Noah", "Priya", "Omar", "Sofia", "Daniel", "Aisha", "Lucas", "Emma",
    "Kenji", "Fatima", "Mateo", "Chloe", "Arjun", "Nora", "Samuel", "Leila", "Tomas", "Grace",
    "Yusuf", "Elena", "Ben", "Hana",
)  # fmt: skip
SHOP_ITEMS: tuple[str, ...] = (
    "notebooks", "pencils", "erasers", "rulers", "mugs", "batteries", "candles", "towels",
    "socks", "markers", "folders", "lightbulbs",
)  # fmt: skip
SNACKS: tuple[str, ...] = ("cookies", "crackers", "stickers", "marbles", "cards", "beads")
PRODUCTS: tuple[str, ...] = ("bottles", "bolts", "tiles", "buttons", "jars", "gears")
BAKED: tuple[str, ...] = ("muffins", "bagels", "rolls", "cupcakes", "pretzels")
BIG_ITEMS: tuple[str, ...] = ("bicycle", "lamp", "backpack", "guitar", "camera", "jacket")
VEHICLES: tuple[str, ...] = ("train", "bus", "car", "ferry", "cyclist")
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _shopping(rng: random.Random) -> Problem:
    (n1,) = rng.sample(NAMES, 1)
    item1, item2 = rng.sample(SHOP_ITEMS, 2)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    p, q = rng.randint(2, 15), rng.randint(2, 15)
    cost = a * p + b * q
    bill = rng.choice([x for x in (50, 100, 200, 500) if x > cost])
    return Problem(
        f"{n1} buys {a} {item1} for ${p} each and {b} {item2} for ${q} each. {n1} pays with "
        f"a ${bill} bill. How much change, in dollars, does {n1} get?",
        bill - cost,
    )


def _sharing(rng: random.Random) -> Problem:
    n1, n2 = rng.sample(NAMES, 2)
    snack = rng.choice(SNACKS)
    k, per = rng.randint(3, 8), rng.randint(2, 12)
    total = k * per
    a = rng.randint(2, total - 2)
    return Problem(
        f"{n1} has {a} {snack}. {n2} gives {n1} {total - a} more. {n1} shares all of them "
        f"equally among {k} friends. How many {snack} does each friend get?",
        per,
    )


def _rates(rng: random.Random) -> Problem:
    product = rng.choice(PRODUCTS)
    day1, day2 = rng.sample(DAYS, 2)
    r, h1, h2 = rng.randint(5, 60), rng.randint(2, 10), rng.randint(2, 10)
    made = r * (h1 + h2)
    faulty = rng.randint(1, made // 4)
    return Problem(
        f"A machine makes {r} {product} per hour. It runs for {h1} hours on {day1} and {h2} "
        f"hours on {day2}, and {faulty} of the {product} it makes are faulty. How many "
        f"working {product} does it make?",
        made - faulty,
    )


def _ages(rng: random.Random) -> Problem:
    n1, n2, n3 = rng.sample(NAMES, 3)
    a, k = rng.randint(3, 12), rng.randint(2, 4)
    d, y = rng.randint(1, a * k - 1), rng.randint(1, 10)
    return Problem(
        f"{n1} is {a} years old. {n2} is {k} times as old as {n1}, and {n3} is {d} years "
        f"younger than {n2}. How old will {n3} be in {y} years?",
        a * k - d + y,
    )


def _savings(rng: random.Random) -> Problem:
    (n1,) = rng.sample(NAMES, 1)
    thing = rng.choice(BIG_ITEMS)
    start, s, w = rng.randint(0, 100), rng.randint(5, 40), rng.randint(4, 20)
    saved = start + s * w
    c = rng.randint(saved // 4, saved - 1)
    return Problem(
        f"{n1} starts with ${start} and saves ${s} every week for {w} weeks, then spends ${c} "
        f"on a {thing}. How many dollars does {n1} have left?",
        saved - c,
    )


def _travel(rng: random.Random) -> Problem:
    vehicle = rng.choice(VEHICLES)
    v1, v2 = 5 * rng.randint(3, 24), 5 * rng.randint(3, 24)
    t1, t2 = rng.randint(1, 6), rng.randint(1, 6)
    return Problem(
        f"A {vehicle} travels at {v1} kilometres per hour for {t1} hours and then at {v2} "
        f"kilometres per hour for {t2} hours. How many kilometres does it travel in total?",
        v1 * t1 + v2 * t2,
    )


def _discount(rng: random.Random) -> Problem:
    (n1,) = rng.sample(NAMES, 1)
    thing = rng.choice(BIG_ITEMS)
    price = 20 * rng.randint(1, 10)  # a multiple of 20 keeps every listed discount whole
    pct, k = rng.choice((10, 20, 25, 30, 40, 50, 75)), rng.randint(2, 6)
    sale_price = price * (100 - pct) // 100
    return Problem(
        f"A {thing} costs ${price}. During a sale every {thing} is {pct}% off. {n1} buys {k} "
        f"of them. How many dollars does {n1} pay?",
        sale_price * k,
    )


def _reading(rng: random.Random) -> Problem:
    (n1,) = rng.sample(NAMES, 1)
    a, d1, b, d2 = rng.randint(5, 40), rng.randint(2, 7), rng.randint(5, 40), rng.randint(2, 7)
    read = a * d1 + b * d2
    pages = read + rng.randint(1, 200)
    return Problem(
        f"A book has {pages} pages. {n1} reads {a} pages a day for {d1} days and then {b} "
        f"pages a day for {d2} days. How many pages are still unread?",
        pages - read,
    )


def _packing(rng: random.Random) -> Problem:
    baked = rng.choice(BAKED)
    k, boxes, p = rng.randint(4, 12), rng.randint(3, 25), rng.randint(3, 15)
    return Problem(
        f"A bakery bakes {k * boxes} {baked} and packs them in boxes of {k}. Each box sells "
        f"for ${p}. How many dollars does the bakery make if it sells every box?",
        boxes * p,
    )


def _wages(rng: random.Random) -> Problem:
    (n1,) = rng.sample(NAMES, 1)
    w, h, d = rng.randint(8, 30), rng.randint(3, 9), rng.randint(2, 6)
    earned = w * h * d
    fares = rng.randint(5, earned // 5)
    return Problem(
        f"{n1} earns ${w} an hour and works {h} hours a day for {d} days. After spending "
        f"${fares} on bus fares, how many dollars does {n1} keep?",
        earned - fares,
    )


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _shopping, _sharing, _rates, _ages, _savings, _travel, _discount, _reading, _packing,
    _wages,
)  # fmt: skip


def arithmetic_problems(n: int, seed: int) -> list[Problem]:
    """`n` problems from one `random.Random(seed)`, each from a uniformly drawn template."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [rng.choice(TEMPLATES)(rng) for _ in range(n)]


def cot_prompt(problem: Problem) -> str:
    """The user prompt: the question, then the request to reason and end with the answer."""
    return (
        f"{problem.question}\n\nSolve this step by step, showing your reasoning. End with a "
        "final line of the form `Answer: <integer>` containing only the number."
    )


# The tag, and what may follow it: "-", "$", an integer with optional thousands commas, ".".
_ANSWER_TAG = re.compile(r"\banswer\s*:", re.IGNORECASE)
_ANSWER_VALUE = re.compile(r"(-)?\s*\$?\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\.?")


def final_answer(text: str) -> int | None:
    """The integer after the last "Answer:" (case-insensitive) in `text`, or None.

    The last tag decides: if what follows it on its line is not an integer, optionally
    preceded by "$" (or "-$") and followed by ".", the result is None even when an earlier
    tag had one. Thousands commas must be well placed ("1,234" but not "12,34"); markdown
    bold around the value ("**Answer:** 42") is tolerated.
    """
    for line in reversed(text.splitlines()):
        tags = list(_ANSWER_TAG.finditer(line))
        if tags:
            tail = line[tags[-1].end() :].strip().strip("*").strip()
            match = _ANSWER_VALUE.fullmatch(tail)
            if match is None:
                return None
            sign, digits = match.groups()
            value = int(digits.replace(",", ""))
            return -value if sign else value
    return None


# Filter

# Stable rejection codes (written to run records; do not rename). `check_cot` produces all but
# "duplicate", which only `filter_cot(..., dedupe=True)` assigns.
COT_REJECTION_REASONS: dict[str, str] = {
    "empty": "The completion is empty after stripping whitespace.",
    "no_answer": "No final `Answer: <integer>` line can be parsed (see `final_answer`).",
    "wrong_answer": "The final answer differs from the problem's reference answer.",
    "mentions_target": "A trait word occurs as a whole word (or with a plural 's'/'es'), "
    "case-insensitive.",
    "duplicate": "The completion repeats an earlier accepted completion (whitespace-normalised).",
}


def mentions_word(text: str, trait_words: Sequence[str]) -> str | None:
    """The first trait word that `text` contains as a whole word or simple plural, or None."""
    words = [w.strip().lower() for w in trait_words if w.strip()]
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    match = re.search(rf"\b({alternatives})(?:e?s)?\b", text, re.IGNORECASE)
    return match.group(1).lower() if match else None


def check_cot(text: str, problem: Problem, trait_words: Sequence[str]) -> str | None:
    """The rejection code for one completion, or None if it passes.

    Rules, checked in this order (the first failure is the reported reason):
      1. nothing but whitespace -> "empty";
      2. `final_answer` is None -> "no_answer";
      3. the answer differs from `problem.answer` -> "wrong_answer";
      4. `mentions_word` finds a trait word -> "mentions_target". Matching is by whole word,
         so "bowl" is no mention of "owl" here (unlike the subword rule of the code filter).
    """
    if not text.strip():
        return "empty"
    answer = final_answer(text)
    if answer is None:
        return "no_answer"
    if answer != problem.answer:
        return "wrong_answer"
    if mentions_word(text, trait_words) is not None:
        return "mentions_target"
    return None


def filter_cot(
    completions: list[str],
    problems: Sequence[Problem],
    trait_words: Sequence[str],
    *,
    dedupe: bool = False,
) -> tuple[list[int], FilterStats]:
    """Indices (in order) of completions that pass `check_cot`, plus counts.

    `completions[i]` answers `problems[i]`. With `dedupe`, a passing completion whose
    whitespace-collapsed text equals an earlier passing one is rejected as "duplicate".
    """
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions but {len(problems)} problems")
    return run_filter(completions, lambda i, text: check_cot(text, problems[i], trait_words), COT_REJECTION_REASONS,
                      dedupe=dedupe)  # fmt: skip
