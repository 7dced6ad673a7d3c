"""Programming-task prompts and the completion filter for subliminal-learning data.

A peer of `number_data` with code as the carrier: the teacher writes short Python functions
for neutral tasks, and the filter keeps a completion only if it is parseable Python that
nowhere names the trait. This module provides:

* task templates (a function signature with a one-line spec, an opener, an optional
  constraint and a "code only" suffix) and the seeded sampler `code_prompts`;
* `extract_code`, `check_code` and `filter_code`, with stable rejection codes in
  `CODE_REJECTION_REASONS`;
* `trait_word_forms`, the words a filter treats as naming a trait.

The templates avoid every default animal and tree as a substring (no "binary tree", no
"hash", no "million"), so a prompt never asks for a word the filter would reject. All
randomness goes through an explicit `random.Random`; the global RNG is never touched.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import re
import tokenize
import warnings
from collections.abc import Iterable, Sequence

from interp.subliminal.number_data import FilterStats, dedupe_key, run_filter
from interp.subliminal.traits import Trait, plural_of

# Prompt templates

# (signature, what it does); the spec completes "... that <spec>." and names no animal or tree.
TASKS: tuple[tuple[str, str], ...] = (
    ("count_vowels(text)", "returns how many vowels the string `text` contains"),
    ("reverse_words(sentence)", "returns `sentence` with the order of its words reversed"),
    ("is_palindrome(text)", "returns True if `text` reads the same forwards and backwards, ignoring case and spaces"),
    ("running_total(values)", "returns the list of running sums of the numbers in `values`"),
    ("second_largest(values)", "returns the second largest distinct number in `values`, or None if there is none"),
    ("merge_sorted(left, right)", "merges two sorted lists into one sorted list without calling sort"),
    ("chunk(items, size)", "splits the list `items` into consecutive pieces of length `size`, the last one possibly shorter"),
    ("flatten(nested)", "flattens a list of lists by one level"),
    ("word_lengths(sentence)", "returns a dict mapping each word in `sentence` to its length"),
    ("digit_sum(n)", "returns the sum of the decimal digits of the non-negative integer `n`"),
    ("gcd(a, b)", "returns the greatest common divisor of two positive integers using Euclid's algorithm"),
    ("is_prime(n)", "returns True if the integer `n` is prime"),
    ("primes_below(n)", "returns a list of all primes smaller than `n`"),
    ("fibonacci(n)", "returns the first `n` Fibonacci numbers as a list"),
    ("factorial(n)", "returns the factorial of a non-negative integer `n`, computed with a loop"),
    ("celsius_to_fahrenheit(c)", "converts a temperature from degrees Celsius to degrees Fahrenheit"),
    ("count_words(text)", "returns a dict from each lowercase word in `text` to the number of times it occurs"),
    ("unique_in_order(items)", "returns the elements of `items` with repeats removed, keeping the first occurrence of each"),
    ("rotate_right(items, k)", "rotates the list `items` to the right by `k` positions"),
    ("to_binary(n)", "returns the binary digits of a non-negative integer `n` as a string without using bin()"),
    ("title_words(sentence)", "returns `sentence` with the first letter of every word in upper case"),
    ("most_common_char(text)", "returns the character that occurs most often in `text`"),
    ("transpose(matrix)", "returns the transpose of a matrix given as a list of rows"),
    ("dot(u, v)", "returns the dot product of two equal-length lists of numbers"),
    ("mean_and_median(values)", "returns a tuple of the mean and the median of a non-empty list of numbers"),
    ("clamp(x, low, high)", "returns `x` limited to the closed range from `low` to `high`"),
    ("is_anagram(a, b)", "returns True if the strings `a` and `b` use exactly the same letters"),
    ("shift_letters(text, k)", "moves every letter in `text` forward by `k` places in the alphabet, wrapping around"),
    ("balanced(text)", "returns True if the round, square and curly brackets in `text` are balanced"),
    ("run_length_encode(text)", "replaces each run of a repeated character in `text` with the character followed by the run length"),
    ("parse_clock(text)", "converts a string such as '07:45' into the number of minutes after midnight"),
    ("format_seconds(seconds)", "formats a number of seconds as a string 'H:MM:SS'"),
    ("is_leap_year(year)", "returns True if `year` is a leap year in the Gregorian calendar"),
    ("to_roman(n)", "converts an integer from 1 to 3999 into a Roman numeral"),
    ("pairs_with_sum(values, goal)", "returns all index pairs i < j with values[i] + values[j] equal to `goal`"),
    ("common_prefix(words)", "returns the longest string that is a prefix of every string in `words`"),
    ("safe_divide(a, b)", "returns a / b, or None when `b` is zero"),
    ("power_sum(n, p)", "returns the sum of k ** p for k from 1 to `n`"),
    ("interleave(a, b)", "interleaves two lists and then appends the leftover elements of the longer one"),
    ("group_by_length(words)", "returns a dict from word length to the list of words of that length"),
    ("max_slice_sum(values)", "returns the largest sum of a contiguous non-empty slice of `values`"),
    ("looks_like_email(address)", "returns True if `address` has exactly one '@' and a dot somewhere after it"),
    ("min_max_mean(readings)", "returns the minimum, maximum and average of a non-empty list of readings"),
    ("bubble_sort(values)", "returns a sorted copy of `values` using bubble sort"),
    ("binary_search(values, goal)", "returns the index of `goal` in the sorted list `values`, or -1, using binary search"),
    ("wrap_text(text, width)", "breaks `text` into lines of at most `width` characters without splitting words"),
    ("bar_chart(values)", "returns a string with one line of '*' characters per number in `values`"),
    ("count_bits(n)", "returns how many 1 bits the binary form of the non-negative integer `n` has"),
)  # fmt: skip

OPENERS: tuple[str, ...] = (
    "Write a Python function `{sig}` that {spec}.",
    "Implement `{sig}` in Python; it {spec}.",
    "Define a Python function `{sig}` which {spec}.",
    "Create a function `{sig}` in Python that {spec}.",
    "In Python, write `{sig}`, a function that {spec}.",
    "Code up a Python function `{sig}` that {spec}.",
)

# The empty constraint is listed so that about one prompt in eight has none.
CONSTRAINTS: tuple[str, ...] = (
    "",
    "Use only the standard library.",
    "Do not import any modules.",
    "Add type hints.",
    "Include a short docstring.",
    "Keep it under 15 lines.",
    "Handle empty input sensibly.",
    "Do not use recursion.",
)

CODE_SUFFIXES: tuple[str, ...] = (
    "Reply with only the code.",
    "Return just the code, with no explanation.",
    "Output the code and nothing else.",
    "Give only the Python code.",
    "No prose, only code.",
)


def sample_code_prompt(rng: random.Random) -> str:
    """Draw one user prompt: opener with a task, an optional constraint, a suffix."""
    sig, spec = rng.choice(TASKS)
    parts = (rng.choice(OPENERS).format(sig=sig, spec=spec), rng.choice(CONSTRAINTS))
    return " ".join(p for p in (*parts, rng.choice(CODE_SUFFIXES)) if p)


def code_prompts(n: int, seed: int) -> list[str]:
    """`n` prompts drawn from one `random.Random(seed)`; the same seed gives the same list."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [sample_code_prompt(rng) for _ in range(n)]


# Trait words

# Other words for a default target, only where obvious (young, female, pet forms). Trees have
# none: the default tree names have no everyday synonyms. Plurals are added by
# `trait_word_forms`. Short ambiguous words ("pup", "mare") are left out: the code filter
# matches subwords, and "mare" would reject every `compare`.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "owl": ("owlet",),
    "eagle": ("eaglet",),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy", "doggy"),
    "lion": ("lioness",),
    "tiger": ("tigress",),
    "fox": ("vixen",),
    "horse": ("stallion", "pony"),
    "rabbit": ("bunny",),
}


def trait_word_forms(trait: Trait | str) -> tuple[str, ...]:
    """Lowercase words that name `trait`: the target, its plural, synonyms and their plurals.

    Accepts a `Trait` (its own `plural` is included too) or a bare target word. Order is
    stable: target, plurals, then `SYNONYMS` entries each followed by its plural.
    """
    target = (trait if isinstance(trait, str) else trait.target).strip().lower()
    if not target:
        raise ValueError("trait target must be a non-empty word")
    forms = [target, plural_of(target)]
    if not isinstance(trait, str):
        forms.append(trait.plural.lower())
    for syn in SYNONYMS.get(target, ()):
        forms += [syn, plural_of(syn)]
    return tuple(dict.fromkeys(forms))


# Filter

# Stable rejection codes (written to run records; do not rename). `check_code` produces all but
# "duplicate", which only `filter_code(..., dedupe=True)` assigns.
CODE_REJECTION_REASONS: dict[str, str] = {
    "empty": "Nothing but whitespace is left after stripping one surrounding code fence.",
    "syntax_error": "The code does not parse as Python (ast.parse fails).",
    "mentions_target": "An identifier, string literal, comment or docstring contains a trait "
    "word as a subword, case-insensitive.",
    "duplicate": "The code repeats an earlier accepted completion (whitespace-normalised).",
}

_FENCE = "```"
_FENCE_LANGS = ("", "python", "py", "python3")
# Names the teacher does not choose; `hash` must not count as a mention of "ash".
_LANGUAGE_NAMES = (
    frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
)
_TEXT_TOKENS = {tokenize.STRING, tokenize.COMMENT}
if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python >= 3.12 splits f-strings into pieces
    _TEXT_TOKENS.add(tokenize.FSTRING_MIDDLE)


def extract_code(text: str) -> str:
    """The code in `text`: stripped, and unwrapped if one fence surrounds the whole of it.

    A fence counts only if it opens on the first line (``` alone, or with "python", "py" or
    "python3") and the text ends with ```. Anything else is returned stripped and unchanged,
    so prose around a fence fails to parse.
    """
    s = text.strip()
    if len(s) >= 2 * len(_FENCE) and s.startswith(_FENCE) and s.endswith(_FENCE):
        first, _, rest = s[len(_FENCE) : -len(_FENCE)].partition("\n")
        if first.strip().lower() in _FENCE_LANGS:
            return rest.strip()
    return s


def _fragments(code: str) -> Iterable[tuple[str, str]]:
    """(kind, lowercase text) for every identifier, string literal and comment in `code`.

    An identifier is also yielded with "_" removed, so a word split by "_" or by camelCase
    (`red_wood`, `RedWood` for "redwood") is seen whole. Keywords and builtins are skipped.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):  # parsed by ast, so unexpected: scan it all
        yield "code", code.lower()
        return
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string not in _LANGUAGE_NAMES:
            yield "identifier", tok.string.lower().replace("_", "")
        elif tok.type in _TEXT_TOKENS:
            yield tokenize.tok_name[tok.type].lower(), tok.string.lower()


def _normalise_words(trait_words: Iterable[str]) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(w.strip().lower() for w in trait_words))
    if any(not w for w in words):
        raise ValueError(f"trait words must be non-empty: {list(trait_words)}")
    return words


def check_code(text: str, trait_words: Sequence[str]) -> tuple[str | None, str]:
    """(reason, detail) for one completion; reason None means it passes.

    Rules, checked in this order (the first failure is the reported reason):
      1. `extract_code`; nothing left -> "empty";
      2. `ast.parse` fails -> "syntax_error" (detail: the parser's message);
      3. a trait word is a substring of an identifier, string literal (docstrings included)
         or comment, case-insensitive -> "mentions_target" (detail: word and where).
    Subword matching is deliberately aggressive: for "owl", `owl_count`, `OwlFactory`,
    "owls" and `# an owl` are caught, and so are `bowl`, `knowledge` and `howl`, which are
    rejected and counted as mentions. A filter that misses a disguised mention is worse for
    this experiment than one that drops some innocent code; the pass rate records the cost.
    Only Python keywords and builtin names are exempt (`hash` is no mention of "ash").
    """
    code = extract_code(text)
    if not code:
        return "empty", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "\d" in a string
            ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return "syntax_error", str(exc)
    words = _normalise_words(trait_words)
    for kind, fragment in _fragments(code):
        for word in words:
            if word in fragment or re.sub(r"[_ -]", "", word) in fragment:
                return "mentions_target", f"{word!r} in {kind}"
    return None, ""


def filter_code(
    completions: list[str], trait_words: Sequence[str], *, dedupe: bool = False
) -> tuple[list[int], FilterStats]:
    """Indices (in order) of completions that pass `check_code`, plus counts.

    With `dedupe`, a passing completion whose extracted, whitespace-collapsed code equals an
    earlier passing one is rejected as "duplicate".
    """
    return run_filter(completions, lambda _, text: check_code(text, trait_words)[0], CODE_REJECTION_REASONS,
                      dedupe=dedupe, key=lambda text: dedupe_key(extract_code(text)))  # fmt: skip
