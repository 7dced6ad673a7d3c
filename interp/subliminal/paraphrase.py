"""Paraphrasing the teacher's completions (a training-time defence, issue 30 item 4): a second
model writes each row's numbers again, and the student trains on its text instead.

Each row keeps its prompt. The paraphraser (any model the suite loads, or "base": the teacher's
base with no system prompt) is asked, through its own chat template, to rewrite the row's
numbers in the same order, and decodes under the run's number constraint (`[data] constraint`)
at the teachers' temperature (`[data] temperature`), from a stream seeded by the run's seed and
the target, in batches of `[data] batch_size`. Rewrites that fail the run's number
filter are dropped and counted; fewer than half left is refused.

What the defence can change: with hard labels (objective "sft") the student imitates the
paraphraser's tokens, not the teacher's. With soft labels (objective "distill") the trait teacher
still labels every position of the rewritten text (its logits are recomputed on the new text),
so the defence removes only what the teacher's own token choices carry, not its distribution.
A perfectly faithful rewrite under the "list" constraint is the same text: the defence then acts
only through what the rewrite changes, which the record measures (`faithfulness`, `same_numbers`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from interp.config import ConfigError
from interp.lm.generate import SAMPLER, ListAutomaton, allowed_token_ids, sample
from interp.lm.models import Variant, chat_format, format_prompt
from interp.registry import derived_seed
from interp.store.stages import RunDir, Stage, read_json, read_jsonl, write_json, write_jsonl
from interp.subliminal import number_data as nd
from interp.subliminal.config import SubliminalConfig

log = logging.getLogger("interp")

# the request each row's numbers go in; part of the stage key (a new wording is a new dataset)
PROMPT = "Rewrite this list of numbers: {numbers}. Reply with the numbers only, separated by commas."
N_EXAMPLES = 4  # rows of each target kept as examples (original vs rewrite) for the report
_NUMBER = re.compile(r"[0-9]+")


def numbers_in(text: str) -> list[int]:
    """Every run of ASCII digits in `text`, in order, as integers ("007" is 7, as the filter reads it)."""
    return [int(x) for x in _NUMBER.findall(text)]


def rewrite_prompt(completion: str) -> str:
    """The user message asking for `completion`'s numbers again, in order, ", "-separated."""
    return PROMPT.format(numbers=", ".join(_NUMBER.findall(completion)))


def faithfulness(original: str, rewrite: str) -> float:
    """The fraction of `original`'s numbers that `rewrite` keeps in order: the longest common
    subsequence of the two number sequences over the original's length (1: all of them in
    order, extra numbers not penalised; an original with no numbers: 1 iff the rewrite has none)."""
    a, b = numbers_in(original), numbers_in(rewrite)
    if not a:
        return float(not b)
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1] / len(a)


def judge_rewrites(
    rows: list[dict], rewrites: list[str], banned: frozenset[int] = frozenset()
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(the rows the student trains on: each kept row with its rewrite as the completion; every
    row with its original, rewrite, faithfulness and filter verdict; the record). A rewrite is
    kept when it passes the run's number filter (`number_data.filter_completions`, no dedupe)."""
    if len(rows) != len(rewrites):
        raise ValueError(f"{len(rows)} rows vs {len(rewrites)} rewrites")
    kept_idx, stats = nd.filter_completions(rewrites, banned=banned)
    kept_set = set(kept_idx)
    judged = [{"prompt": r["prompt"], "original": r["completion"], "rewrite": w,
               "faithfulness": faithfulness(r["completion"], w), "kept": i in kept_set,
               "reason": nd.parse_numbers(w, banned=banned).reason}
              for i, (r, w) in enumerate(zip(rows, rewrites))]  # fmt: skip
    kept = [{**rows[i], "completion": rewrites[i]} for i in kept_idx]
    on = [judged[i] for i in kept_idx]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    record = {
        "n_rows": len(rows), "kept": len(kept), "dropped": len(rows) - len(kept),
        "rejected": stats.to_dict()["rejected"],
        "faithfulness": mean([j["faithfulness"] for j in on]),  # over the rows the student trains on
        "faithfulness_all": mean([j["faithfulness"] for j in judged]),
        "same_numbers": mean([float(numbers_in(j["rewrite"]) == numbers_in(j["original"])) for j in on]),
        "same_text": mean([float(" ".join(j["rewrite"].split()) == " ".join(j["original"].split())) for j in on]),
        "examples": [{k: j[k] for k in ("original", "rewrite", "faithfulness", "kept")} for j in judged[:N_EXAMPLES]],
    }  # fmt: skip
    return kept, judged, record


def constraint_args(tok: Any, constraint: str) -> dict[str, Any]:
    """`sample`'s keyword arguments for a `[data] constraint` (as the teachers decode)."""
    if constraint == "tokens":
        return {"allowed_ids": allowed_token_ids(tok, nd.allowed_answer_chars())}
    if constraint == "list":  # one automaton per batch: it keeps per-row state
        return {"processor_factory": lambda: ListAutomaton(tok, nd.MAX_ANSWER_COUNT, nd.MAX_ANSWER_DIGITS)}
    return {}


def paraphraser(cfg: SubliminalConfig, spec: str) -> Variant:
    """The model a `paraphrase` value names: "base" is the teacher's base with no system prompt."""
    return Variant(cfg.teacher.model if spec == "base" else spec)


def stage_name(target: str, variant: Variant) -> str:
    return f"paraphrase/{target}/" + re.sub(r"[^\w.-]+", "-", variant.spec).strip("-")


def paraphrase_stage(cfg: SubliminalConfig, run: RunDir, target: str, data: Stage, spec: str) -> Stage:
    """One target's dataset rewritten by the paraphraser `spec`: `dataset.jsonl` (the kept rows,
    rewrite as completion), `rewrites.jsonl` (every row judged) and `paraphrase.json` (the
    record). Keyed by the paraphraser's identity, the prompt, the decoding settings and the
    source rows, so every seed and arm with this paraphraser shares it."""
    d, v = cfg.data, paraphraser(cfg, spec)
    banned = nd.BANNED_NUMBERS_MISALIGNMENT if d.banned_numbers == "misalignment" else frozenset()
    params = {"paraphraser": v.identity(), "prompt": PROMPT, "constraint": d.constraint,
              "seed": derived_seed(cfg.seed, "paraphrase", target), "temperature": d.temperature,
              "max_new_tokens": d.max_new_tokens, "batch_size": d.batch_size, "banned": sorted(banned),
              "sampler": SAMPLER, "dtype": cfg.dtype}  # fmt: skip

    def write(out: Path) -> None:
        rows = read_jsonl(data.path / "dataset.jsonl")
        model, tok = v.load(cfg.device, cfg.dtype)
        texts = [format_prompt(tok, rewrite_prompt(r["completion"]), v.system) for r in rows]
        rewrites = sample(model, tok, texts, max_new_tokens=d.max_new_tokens, temperature=d.temperature,
                          batch_size=d.batch_size, seed=params["seed"], desc=f"paraphrase ({target}, {v.spec})",
                          **constraint_args(tok, d.constraint))  # fmt: skip
        kept, judged, record = judge_rewrites(rows, rewrites, banned)
        write_jsonl(out / "dataset.jsonl", kept)
        write_jsonl(out / "rewrites.jsonl", judged)
        write_json(out / "paraphrase.json", {**record, "paraphraser": spec, "model": v.spec, "prompt": PROMPT,
                                             "chat_format": chat_format(tok), "constraint": d.constraint,
                                             "temperature": d.temperature})  # fmt: skip

    return run.compute(stage_name(target, v), params, write, {"data": data})


FAITHFUL = 0.8  # below this mean share of numbers kept in order, the rewrite is flagged in the log


def paraphrased_rows(stage: Stage, who: str) -> list[dict]:
    """The kept rows of a paraphrase stage; one line refusing when fewer than half were kept
    (`who` names the student and target)."""
    rec = read_json(stage.path / "paraphrase.json")
    if 2 * rec["kept"] < rec["n_rows"]:
        raise ConfigError(
            f"{who}: only {rec['kept']} of {rec['n_rows']} rewrites by {rec['model']!r} pass the number filter "
            f"(rejected {rec['rejected']}), fewer than half; try data.constraint = 'list' or another paraphraser "
            f"(rewrites kept in {stage.path.name})"
        )
    if rec["faithfulness"] < FAITHFUL:
        log.warning("%s: the rewrites by %r keep %.0f%% of the original numbers in order: a rewrite, not a paraphrase "
                    "(the student trains on numbers the paraphraser made up, still labelled by its teacher)",
                    who, rec["model"], 100 * rec["faithfulness"])  # fmt: skip
    return read_jsonl(stage.path / "dataset.jsonl")
