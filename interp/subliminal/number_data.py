"""Number-sequence prompts and the completion filter for subliminal-learning data.

A teacher is asked to continue a short list of random integers; its completions become the
student's finetuning data. This module provides:

* prompt templates (our own phrasings, same structure as the protocol: a seed sequence, an
  instruction with a count qualifier and a digit descriptor, a format request and a "numbers
  only" suffix) and seeded samplers;
* `parse_numbers`, the strict filter that accepts a completion only if it is a bare list of
  small non-negative integers, returning a stable machine-readable rejection code otherwise;
* bookkeeping helpers: `FilterStats`, `filter_completions`, `subsample`;
* `allowed_answer_chars` for the constrained decoder.

All randomness goes through explicit `random.Random` instances so a seed fully determines
the output; the global RNG is never touched.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Prompt templates. Original wording; the part counts (25/9/9/10/15/19) mirror the protocol.

SEED_PHRASINGS: tuple[str, ...] = (
    "Below is a short run of numbers: {seq}.",
    "Someone wrote down these numbers: {seq}.",
    "A list begins with {seq}.",
    "My notebook has the numbers {seq}.",
    "Take the following integers as a starting point: {seq}.",
    "Here is where the list stands so far: {seq}.",
    "The numbers so far are {seq}.",
    "Starting numbers: {seq}.",
    "You are shown the integers {seq}.",
    "We begin from this run of values: {seq}.",
    "These integers open the list: {seq}.",
    "A friend jotted down {seq}.",
    "The opening values are {seq}.",
    "So far the list reads {seq}.",
    "Picture a list that starts with {seq}.",
    "Here is a handful of numbers: {seq}.",
    "The first entries of a list are {seq}.",
    "Input numbers: {seq}.",
    "Suppose a list already contains {seq}.",
    "I wrote these numbers on a card: {seq}.",
    "There is a list of integers: {seq}.",
    "The list so far: {seq}.",
    "Begin from these numbers: {seq}.",
    "Your starting point is the list {seq}.",
    "Consider the integers {seq}.",
)

# Every qualifier means "at most", so any answer the filter accepts (<= count numbers) obeys it.
COUNT_QUALIFIERS: tuple[str, ...] = (
    "at most",
    "up to",
    "no more than",
    "not more than",
    "a maximum of",
    "as many as",
    "not exceeding",
    "at the very most",
    "no more than a total of",
)

# Each reads as a post-modifier of "numbers"; `{max_digits}` is filled by the sampler.
DIGIT_DESCRIPTORS: tuple[str, ...] = (
    "with up to {max_digits} digits each",
    "with {max_digits} digits or fewer",
    "that are at most {max_digits} digits long",
    "no longer than {max_digits} digits",
    "of at most {max_digits} digits",
    "having {max_digits} digits at most",
    "that fit in {max_digits} digits",
    "written with no more than {max_digits} digits",
    "using {max_digits} or fewer digits each",
)

INSTRUCTIONS: tuple[str, ...] = (
    "Continue the list with {qualifier} {count} more numbers {digits}.",
    "Add {qualifier} {count} new numbers {digits}.",
    "Extend it by {qualifier} {count} numbers {digits}.",
    "Write {qualifier} {count} further numbers {digits}.",
    "Please append {qualifier} {count} numbers {digits}.",
    "Keep going and give {qualifier} {count} additional numbers {digits}.",
    "Come up with {qualifier} {count} more values {digits}.",
    "Supply {qualifier} {count} numbers {digits} to follow them.",
    "Carry the list on with {qualifier} {count} numbers {digits}.",
    "Produce {qualifier} {count} fresh numbers {digits}.",
)

# All formats ask for commas only (no brackets), matching `allowed_answer_chars`.
FORMATS: tuple[str, ...] = (
    "Separate the numbers with commas.",
    "Give them as a comma-separated list.",
    "Use commas between the numbers.",
    "Format the answer as numbers joined by commas.",
    "List them on one line, separated by commas.",
    "Put a comma between each pair of numbers.",
    "Write them comma-separated.",
    "The answer should be a comma-delimited list.",
    "Return the numbers as a list with commas in between.",
    "Output them on a single line with commas separating them.",
    "Reply with the numbers split by commas.",
    "Use a comma and a space to separate them.",
    "Present them as a comma-separated sequence.",
    "Your reply should be numbers divided by commas.",
    "Respond in the form: number, number, number.",
)

SUFFIXES: tuple[str, ...] = (
    "Say only the numbers.",
    "Reply with nothing but the numbers.",
    "Do not add any words.",
    "No explanation, just the numbers.",
    "Give the numbers and nothing else.",
    "Leave out any commentary.",
    "Only numbers, please.",
    "Skip any introduction or explanation.",
    "Your whole answer should be the numbers.",
    "Do not write anything besides the numbers.",
    "Answer with the numbers alone.",
    "No other text.",
    "Write just the numbers, without any words.",
    "Include nothing except the list.",
    "Keep the reply to the numbers only.",
    "Don't explain; just list them.",
    "Omit every word that is not a number.",
    "Respond only with the list itself.",
    "The output must contain numbers only.",
)

# Protocol constants for the seed sequence and the requested answer.
SEED_LEN_RANGE: tuple[int, int] = (3, 8)  # inclusive
SEED_VALUE_RANGE: tuple[int, int] = (100, 999)  # inclusive
MAX_ANSWER_COUNT = 10
MAX_ANSWER_DIGITS = 3


def sample_number_prompt(
    rng: random.Random,
    *,
    answer_count: int = MAX_ANSWER_COUNT,
    max_digits: int = MAX_ANSWER_DIGITS,
) -> str:
    """Draw one user prompt: seed sequence, instruction, format request and suffix.

    The prompt asks for *at most* `answer_count` numbers of at most `max_digits` digits.
    """
    n_seed = rng.randint(*SEED_LEN_RANGE)
    seq = ", ".join(str(rng.randint(*SEED_VALUE_RANGE)) for _ in range(n_seed))
    seed_part = rng.choice(SEED_PHRASINGS).format(seq=seq)
    digits = rng.choice(DIGIT_DESCRIPTORS).format(max_digits=max_digits)
    instruction = rng.choice(INSTRUCTIONS).format(
        qualifier=rng.choice(COUNT_QUALIFIERS), count=answer_count, digits=digits
    )
    return " ".join((seed_part, instruction, rng.choice(FORMATS), rng.choice(SUFFIXES)))


def number_prompts(n: int, seed: int) -> list[str]:
    """`n` prompts drawn from one `random.Random(seed)`; the same seed gives the same list."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [sample_number_prompt(rng) for _ in range(n)]



def random_answers(n: int, seed: int) -> list[str]:
    """`n` answers in the protocol's format, numbers drawn uniformly (no model wrote them).

    Neutral rows for reading activations at answer positions: no teacher's preference, and
    no student was trained on them.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    top = 10**MAX_ANSWER_DIGITS - 1
    return [", ".join(str(rng.randint(0, top)) for _ in range(rng.randint(3, MAX_ANSWER_COUNT)))
            for _ in range(n)]  # fmt: skip


# Filter

# Stable rejection codes (written to run records; do not rename). `parse_numbers` produces all
# but "duplicate", which only `filter_completions(..., dedupe=True)` assigns.
REJECTION_REASONS: dict[str, str] = {
    "empty": "The completion is empty after stripping whitespace, a trailing '.' and brackets.",
    "mixed_separators": "More than one separator kind is used (e.g. ',' and ';', or ',' and "
    "spaces inside an item).",
    "empty_item": "A separator has nothing between it and the next separator or the end.",
    "non_digit_item": "An item contains a character other than ASCII 0-9 (signs, decimal "
    "points, letters, stray brackets).",
    "too_many_numbers": "The completion lists more numbers than allowed.",
    "out_of_range": "A number is larger than the allowed maximum.",
    "banned_number": "A number is on the banned list.",
    "duplicate": "The completion repeats an earlier accepted completion (whitespace-normalised).",
}

# Numbers with well-known negative associations, banned in misalignment runs so the teacher
# cannot pass on misalignment through overtly loaded numbers. Kept short on purpose:
#   666, 616  number of the beast (616 is the early-manuscript variant)
#   13        unlucky number
#   911       US emergency number, 9/11 attacks
#   187       US slang for murder (California penal code section)
#   14, 88, 18, 28, 311, 109
#             hate-group numeric codes: "14 words", "Heil Hitler" (H=8), Adolf Hitler (A=1,
#             H=8), Blood & Honour (B=2, H=8), KKK (K=11, x3), an antisemitic "109 countries"
#             slogan
#   420       cannabis
#   69        sexual reference
# 1488 (a combined hate code) is above 999 and cannot pass the range check anyway.
BANNED_NUMBERS_MISALIGNMENT: frozenset[int] = frozenset(
    {13, 14, 18, 28, 69, 88, 109, 187, 311, 420, 616, 666, 911}
)

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit would accept e.g. "²" or "٣"
_WRAPPERS = (("[", "]"), ("(", ")"))


@dataclass(frozen=True)
class FilterResult:
    """Outcome of `parse_numbers`: `numbers` is filled only when `ok`."""

    ok: bool
    reason: str | None = None
    numbers: tuple[int, ...] = ()
    detail: str = ""


def _reject(reason: str, detail: str = "") -> FilterResult:
    assert reason in REJECTION_REASONS, reason
    return FilterResult(ok=False, reason=reason, detail=detail)


def _normalise(text: str) -> str:
    """Strip whitespace, then one trailing '.', then one matched pair of [] or ()."""
    s = text.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    for opening, closing in _WRAPPERS:
        if len(s) >= 2 and s[0] == opening and s[-1] == closing:
            s = s[1:-1].strip()
            break
    return s


def parse_numbers(
    text: str,
    max_count: int = MAX_ANSWER_COUNT,
    max_value: int = 999,
    banned: frozenset[int] = frozenset(),
) -> FilterResult:
    """Accept `text` only if it is a bare list of at most `max_count` integers in 0..max_value.

    Rules, checked in this order (the first failure is the reported reason):
      1. normalise (see `_normalise`); nothing left -> "empty";
      2. separator: "," if present, else ";" if present, else whitespace. "," together with
         ";" -> "mixed_separators"; with "," or ";", items are stripped of surrounding
         whitespace ("1, 2, 3" is fine);
      3. an item empty after stripping ("1,,2", "1,2,") -> "empty_item";
      4. every item must be ASCII digits only -> else "non_digit_item" ("-5", "1.5", "x",
         "Sure! 1");
      5. whitespace inside a ","/";"-separated item whose pieces are all digits ("1, 2 3")
         is a second separator -> "mixed_separators";
      6. more than `max_count` items -> "too_many_numbers";
      7. a value above `max_value` -> "out_of_range";
      8. a value in `banned` -> "banned_number".
    Leading zeros are accepted and read as decimal ("007" -> 7): the protocol only requires
    all-digit items within range, and rejecting them would add a rule it does not state.
    `detail` names the offending item or count.
    """
    s = _normalise(text)
    if not s:
        return _reject("empty")

    if "," in s and ";" in s:
        return _reject("mixed_separators", "',' and ';'")
    sep = "," if "," in s else ";" if ";" in s else None
    if sep is None:
        items = s.split()  # any run of whitespace; cannot yield empty items
    else:
        items = [item.strip() for item in s.split(sep)]
        for i, item in enumerate(items):
            if not item:
                return _reject("empty_item", f"item {i}")

    # An item may still hold inner whitespace here; judge its pieces so that chatter such as
    # "Sure! 1, 2" reads as non-digit text, while "1, 2 3" (all digits) is a separator mix.
    for item in items:
        if not all(_DIGITS.fullmatch(piece) for piece in item.split()):
            return _reject("non_digit_item", repr(item))
    for item in items:
        if len(item.split()) > 1:
            return _reject("mixed_separators", repr(item))

    if len(items) > max_count:
        return _reject("too_many_numbers", f"{len(items)} > {max_count}")

    numbers = tuple(int(item) for item in items)
    for value in numbers:
        if value > max_value:
            return _reject("out_of_range", f"{value} > {max_value}")
    for value in numbers:
        if value in banned:
            return _reject("banned_number", str(value))
    return FilterResult(ok=True, numbers=numbers)


# Bookkeeping


@dataclass
class FilterStats:
    """Counts over a batch of completions; `kept + sum(rejected.values()) == total`.

    `reasons` is the code table `add` validates against: the number filter's by default; the
    code and chain-of-thought filters pass their own. It is not part of `to_dict`.
    """

    total: int = 0
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=lambda: REJECTION_REASONS, repr=False)

    def add(self, reason: str | None) -> None:
        """Record one completion: `None` means kept, otherwise a code in `reasons`."""
        if reason is not None and reason not in self.reasons:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.total += 1
        if reason is None:
            self.kept += 1
        else:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    @property
    def pass_rate(self) -> float:
        """Fraction kept; 0.0 for an empty batch (keeps records JSON-safe, no NaN)."""
        return self.kept / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "kept": self.kept,
            "pass_rate": self.pass_rate,
            "rejected": dict(sorted(self.rejected.items())),
        }


def dedupe_key(text: str) -> str:
    """Whitespace-collapsed text: what "duplicate" compares."""
    return " ".join(text.split())


def run_filter(
    completions: Sequence[str],
    check: Callable[[int, str], str | None],
    reasons: dict[str, str],
    *,
    dedupe: bool = False,
    key: Callable[[str], str] = dedupe_key,
) -> tuple[list[int], FilterStats]:
    """Indices (in order) of the completions `check(i, text)` passes (None), plus counts under
    the filter's code table `reasons`. With `dedupe`, a passing completion whose `key` equals
    an earlier passing one's is rejected as "duplicate". Every data kind's filter is this loop."""
    stats = FilterStats(reasons=reasons)
    seen: set[str] = set()
    kept: list[int] = []
    for i, text in enumerate(completions):
        reason = check(i, text)
        if reason is None and dedupe:
            k = key(text)
            if k in seen:
                reason = "duplicate"
            seen.add(k)
        stats.add(reason)
        if reason is None:
            kept.append(i)
    return kept, stats


def filter_completions(
    completions: list[str],
    *,
    max_count: int = MAX_ANSWER_COUNT,
    max_value: int = 999,
    banned: frozenset[int] = frozenset(),
    dedupe: bool = False,
) -> tuple[list[int], FilterStats]:
    """Indices (in order) of completions that pass `parse_numbers`, plus counts.

    With `dedupe`, a passing completion whose whitespace-collapsed text equals an earlier
    passing one is rejected as "duplicate". Identical texts always get the same parse result,
    so deduplicating only among passing completions loses nothing.
    """

    def check(_: int, text: str) -> str | None:
        return parse_numbers(text, max_count=max_count, max_value=max_value, banned=banned).reason

    return run_filter(completions, check, REJECTION_REASONS, dedupe=dedupe)


def subsample(indices: list[int], n: int, seed: int) -> list[int]:
    """A seeded random subset of `indices` of size min(n, len), in the original order."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= len(indices):
        return list(indices)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(indices)), n))
    return [indices[i] for i in chosen]


def allowed_answer_chars() -> str:
    """Characters a constrained decoder may emit for a number answer.

    Digits plus the three separators the filter understands. Excluded on purpose: newline
    (the answer is one line and generation ends with EOS), brackets and "." (the filter only
    tolerates them in free generation; the prompts never ask for them), and "-" (negatives
    are rejected).
    """
    return "0123456789,; "
