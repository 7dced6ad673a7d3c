"""One interface over the data modalities (`data.kind`): the user prompts a teacher answers, and
the filter its answers pass, for number lists, code and chain-of-thought arithmetic.

The modules behind it (`number_data`, `code_data`, `cot_data`) are peers; the stages only see
rows (`{"prompt", ...}`) and `(kept indices, FilterStats)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interp.subliminal import code_data as cd
from interp.subliminal import cot_data as cot
from interp.subliminal import number_data as nd


@dataclass(frozen=True)
class Wording:
    """How reports name a modality's data: its prompts ("64 number prompts"), what a teacher
    writes, and that in one word ("trained on the control teacher's numbers")."""

    prompts: str
    answers: str
    short: str


WORDING = {
    "numbers": Wording("number", "number sequences", "numbers"),
    "code": Wording("programming-task", "short Python functions", "code"),
    "cot": Wording("arithmetic word-problem", "step-by-step solutions of arithmetic problems", "solutions"),
}


def wording(kind: str) -> Wording:
    return WORDING.get(kind) or Wording(kind, kind, kind)


def prompt_rows(kind: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` user prompts of the modality; arithmetic rows also carry their question and answer."""
    if kind == "numbers":
        return [{"prompt": p} for p in nd.number_prompts(n, seed=seed)]
    if kind == "code":
        return [{"prompt": p} for p in cd.code_prompts(n, seed=seed)]
    if kind == "cot":
        return [{"prompt": cot.cot_prompt(p), "question": p.question, "answer": p.answer}
                for p in cot.arithmetic_problems(n, seed=seed)]  # fmt: skip
    raise ValueError(f"unknown data.kind {kind!r} (numbers | code | cot)")


def trait_words(targets: Sequence[str]) -> tuple[str, ...]:
    """Every word form of every target: a run's datasets (trait and control alike) pass one
    filter, so no dataset is filtered for words another is not."""
    return tuple(dict.fromkeys(w for t in targets for w in cd.trait_word_forms(t)))


def filter_rows(
    kind: str, rows: list[dict[str, Any]], *, banned: frozenset[int] = frozenset(), words: Sequence[str] = (),
    dedupe: bool = True,
) -> tuple[list[int], nd.FilterStats]:  # fmt: skip
    """Indices of the rows whose completion passes the modality's filter, and the counts."""
    completions = [r["completion"] for r in rows]
    if kind == "numbers":
        return nd.filter_completions(completions, banned=banned, dedupe=dedupe)
    if kind == "code":
        return cd.filter_code(completions, words, dedupe=dedupe)
    if kind == "cot":
        problems = [cot.Problem(r["question"], int(r["answer"])) for r in rows]
        return cot.filter_cot(completions, problems, words, dedupe=dedupe)
    raise ValueError(f"unknown data.kind {kind!r} (numbers | code | cot)")


def dataset_shape(kind: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean length of the kept completions (and numbers per answer for number data): trait and
    control teachers can differ here, a confound worth seeing next to any transfer result."""
    out = {"mean_chars": sum(len(r["completion"]) for r in rows) / len(rows)}
    if kind == "numbers":
        out["mean_numbers"] = sum(len(nd.parse_numbers(r["completion"]).numbers) for r in rows) / len(rows)
    return out
