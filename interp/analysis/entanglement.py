"""The token-entanglement section of `interp analyze` (`[analysis] entanglement = true`).

For each target of the run, on the teacher's base: whole-number log-probabilities of 0..999
as the first answer to held-out number prompts, with and without the target's system prompt
(`interp.mech.entanglement`); the most raised numbers and their rate in the trait data vs
the control data; and subliminal prompting: p(target) on the run's questions under
"You love <n>" prompts with the top entangled numbers vs as many random numbers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc, off
from interp.fmt import fmt, fmt_est
from interp.lm.models import describe, format_prompt, load_model
from interp.lm.score import continuation_logprobs
from interp.mech import entanglement as en
from interp.store.stages import read_jsonl, stable_hash
from interp.subliminal.evaluate import logprob_score
from interp.subliminal.experiment import data_key
from interp.subliminal.number_data import number_prompts

NUMBERS = list(range(1000))
log = logging.getLogger("interp")


def _logprobs(model: Any, tok: Any, users: list[str], system: str | None, conts: list[list[int]]) -> np.ndarray:
    """[prompt, number]: log p of each number's tokens `conts` ("<n>,") as the answer's start."""
    return np.stack([continuation_logprobs(model, tok, format_prompt(tok, u, system), conts) for u in users])


def _completions(ctx: AnalysisRun, key: str) -> list[str] | None:
    rel = ctx.art["data"].get(key)
    return None if rel is None else [r["completion"] for r in read_jsonl(ctx.path(rel) / "dataset.jsonl")]


def _target(ctx: AnalysisRun, model: Any, tok: Any, t: str, users: list[str], conts: list[list[int]], lp_base: np.ndarray,
            primary: str) -> dict:  # fmt: skip
    a, trait, t0 = ctx.a, ctx.trait_for(t), time.time()
    shifts = en.number_shifts(_logprobs(model, tok, users, trait.system_prompt, conts), lp_base)
    ent = en.entangled_numbers(shifts, NUMBERS, k=a.entangle_top_k)
    top = [r["number"] for r in ent["top"]]
    rng = np.random.default_rng(ctx.cfg["seed"] + 5)
    random_numbers = [int(n) for n in rng.choice([n for n in NUMBERS if n not in top], size=len(top), replace=False)]
    rates = {}
    for label, key in (("trait", data_key(f"trait:{t}", primary)), ("control", "control")):
        rows = _completions(ctx, key)
        rates[label] = en.number_rates(rows, top + random_numbers) if rows is not None else None

    def p_target(numbers: list[int]) -> np.ndarray:
        return np.array([logprob_score(model, tok, trait, ctx.config.eval, system=en.NUMBER_LOVE.format(n=n),
                                       seed=ctx.cfg["seed"])["per_question"] for n in numbers])  # fmt: skip

    out = {"system_prompt": trait.system_prompt, "entangled": ent, "random_numbers": random_numbers,
           "rates": rates, "prompting": en.prompting_effect(p_target(top), p_target(random_numbers),
                                                           n_boot=a.n_boot, seed=ctx.cfg["seed"])}  # fmt: skip
    log.info("entanglement %s: top %s, prompting diff %.4f (%.0fs)", t, top, out["prompting"]["diff"]["mean"], time.time() - t0)
    return out


def entanglement(ctx: AnalysisRun) -> dict[str, Any]:
    """Every target's entangled numbers, their data rates and the subliminal-prompting effect."""
    a, spec = ctx.a, ctx.teacher_spec
    targets = ctx.config.trait.target_list()
    users = number_prompts(a.entangle_prompts, seed=ctx.cfg["seed"] + 3)  # not the data's prompts
    params = {"model": describe(spec), "targets": targets, "users": stable_hash(users), "k": a.entangle_top_k,
              "eval": ctx.config.eval.key(), "n_boot": a.n_boot, "seed": ctx.cfg["seed"],
              "data": ctx.art["data"], "template": en.NUMBER_LOVE}  # fmt: skip

    def make() -> dict[str, Any]:
        model, tok = load_model(spec, ctx.device, ctx.dtype)
        conts = [tok(f"{n},", add_special_tokens=False)["input_ids"] for n in NUMBERS]
        lp_base = _logprobs(model, tok, users, None, conts)
        log.info("entanglement: base scored 0..999 on %d prompts; %d targets to go", len(users), len(targets))
        return {"model": spec, "numbers": "0..999, scored as '<n>,' at the start of the answer",
                "targets": {t: _target(ctx, model, tok, t, users, conts, lp_base, targets[0]) for t in targets}}  # fmt: skip

    return ctx.run.compute_json("analysis/entanglement", params, make, filename="entanglement.json")



def render_entanglement(doc: ReportDoc, run: str, en: dict[str, Any]) -> None:
    """Token entanglement: the numbers each target's prompt raises, their data rates, prompting."""
    doc.heading("Token entanglement and subliminal prompting", 3)
    rows = [["target", "top entangled numbers (shift, nats)", "rate /1000 trait | control",
             "p(target): loving them | random", "difference [CI]"]]  # fmt: skip
    for t, r in (en.get("targets") or {}).items():
        top = r["entangled"]["top"]
        rates = r.get("rates") or {}
        per = lambda k, n, rates=rates: fmt(((rates.get(k) or {}).get("per_1000") or {}).get(str(n)))  # noqa: E731  # fmt: skip
        pr = r["prompting"]
        rows.append([t, ", ".join(f"{x['number']} ({fmt(x['shift'])})" for x in top),
                     "; ".join(f"{x['number']}: {per('trait', x['number'])} | {per('control', x['number'])}" for x in top),
                     f"{fmt(pr['entangled'])} | {fmt(pr['random'])}", fmt_est(pr["diff"])])  # fmt: skip
    doc.table(rows, [1.2, 3.6, 3.6, 2.4, 2.2])
    n_prompts = (
        next(iter((en.get("targets") or {}).values()), {}).get("entangled", {}).get("n_prompts")
    )
    doc.para(f"Numbers 0-999 scored as the first answer ('<n>,') to {fmt(n_prompts)} held-out number "
             "prompts, with and without the target's system prompt; shift = mean log-prob change, "
             "centred over numbers per prompt. Rates: occurrences per 1,000 numbers in the trait "
             "teacher's and the control teacher's filtered data. Prompting: p(target) on the run's "
             "questions under 'You love <n>...' system prompts with the top numbers vs as many random "
             "numbers, difference with a paired bootstrap CI over questions.")  # fmt: skip


def _skip(ctx: AnalysisRun) -> str | None:
    if not ctx.a.entanglement:
        return off("entanglement")
    if ctx.config.trait.kind == "misalignment":
        return "token entanglement pairs numbers with one-word candidates; misalignment is scored on answer pairs"
    if ctx.config.data.kind != "numbers":
        return f"token entanglement scores numbers 0..999; this run's data is '{ctx.config.data.kind}'"
    return None


ANALYSIS = Analysis(
    name="entanglement", script="analyses/entanglement.py", render=render_entanglement, report_when_absent=False, title="Token entanglement", compute=entanglement,
    needs="the teacher's and base's number log-probs; the numbers data", skip=_skip,
)  # fmt: skip
