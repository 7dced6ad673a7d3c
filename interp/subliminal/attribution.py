"""The first-order attribution stage: every training row of one target's data scored by its share
of the first gradient step's change in the target's log-odds (`interp.lm.attribution`), the score
the `first-order-top` and `first-order-bottom` students' subsets are cut by.

a_r = -<grad l_r, grad f_t> / U at the student's initialisation: l_r the student's own training
loss on row r (its objective, soft or hard labels, its loss mask), U the data's loss positions,
f_t the target's log-odds over the run's candidates, gradients w.r.t. the weights the student
trains (`trained_weights`: a LoRA student's target-module weights, as the first-order analysis).
The rows' scores add up to the first-order prediction of training on all of them.

Which questions f_t is read on: the half of the trait's questions the run is NOT scored on
(`scoring_split`): eval.questions = "test" (26-50) -> "dev" (1-25), and "dev" -> "test". Rows
chosen by their pull on the very questions the students are then scored on would be selected
for those questions' quirks and inflate the top arm's gamma; eval.questions = "all" leaves no
unscored half and is refused when the config is read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from interp.lm.attribution import first_order_scores, log_odds_gradient
from interp.lm.finetune import trained_weights
from interp.lm.models import Variant, completion_suffix, describe, format_prompt
from interp.store.stages import RunDir, Stage, stable_hash, write_json, write_jsonl
from interp.subliminal.config import StudentConfig, SubliminalConfig
from interp.subliminal.evaluate import EvalConfig, questions
from interp.subliminal.jobs import training_inputs
from interp.subliminal.traits import AnyTrait

# the settings that change a row's loss or the weights it is differentiated over (lr, epochs,
# optimiser, schedule and kl_base act after the first gradient: the penalty's is zero at the init)
LOSS_SETTINGS = ("objective", "distill_vocab", "distill_temperature", "method", "target_modules", "layers",
                 "max_seq_len", "default_system_prompt")  # fmt: skip


def scoring_split(evaluated: str) -> str:
    """The question split the first-order score reads: the half the run is not evaluated on."""
    if evaluated not in ("dev", "test"):
        raise ValueError(f"eval.questions = {evaluated!r} leaves no unscored half to attribute rows on "
                         "(set 'test' or 'dev')")  # fmt: skip
    return "dev" if evaluated == "test" else "test"


def scoring_questions(trait: AnyTrait, settings: EvalConfig) -> list[str]:
    """Every question of the split `scoring_split` names (not capped by eval.n_questions: the
    questions are disjoint from the evaluated ones either way, and more of them steady grad f)."""
    other = dataclasses.replace(settings, questions=scoring_split(settings.questions),
                                n_questions=len(trait.question_texts()))  # fmt: skip
    return questions(trait, other)


def first_order_stage(cfg: SubliminalConfig, run: RunDir, s: StudentConfig, target: str, data: Stage,
                      rows: list[dict], teacher: Variant | None) -> Stage:  # fmt: skip
    """Per row of `rows` (the student's rows before its subset is cut: shuffles and masks
    applied), {"contribution", "per_position", "n_positions"} (`first_order_scores`) in
    `scores.jsonl`, and f_t, |grad f_t| and the split in `info.json`. Keyed by the student's
    base, its loss settings, the rows, the teacher (soft labels only), the target, candidates and
    questions: students whose rows and loss agree (the top and bottom arms) share one stage."""
    spec, settings = cfg.student_model(s), s.settings(cfg.train)
    distill = settings.objective == "distill"
    if distill and teacher is None:
        raise ValueError(f"students: '{s.name}' first-order scores with soft labels need {target}'s teacher")
    trait = cfg.trait.trait(target)
    qs = scoring_questions(trait, cfg.eval)
    cands = list(trait.candidates)
    params = {"base": describe(spec), "loss": {k: getattr(settings, k) for k in LOSS_SETTINGS},
              "teacher": teacher.identity() if distill and teacher is not None else None, "rows": stable_hash(rows),
              "target": target, "candidates": cands, "questions": stable_hash([trait.answer_prefix, qs]),
              "eval_default_system_prompt": cfg.eval.default_system_prompt}  # fmt: skip

    def write(out: Path) -> None:
        model, tok, examples, soft = training_inputs(
            spec, rows, teacher if distill else None, cfg.device, cfg.dtype, settings.default_system_prompt
        )
        names = trained_weights(model, settings)
        prompts = [format_prompt(tok, q, default_system=cfg.eval.default_system_prompt) + trait.answer_prefix
                   for q in qs]  # fmt: skip
        value, grad_f = log_odds_gradient(model, tok, prompts, cands, target, names, cfg.eval.batch_size)
        scores = first_order_scores(model, tok, examples, names, grad_f, completion_suffix(tok), settings=settings,
                                    teacher=soft, progress=True)  # fmt: skip
        write_jsonl(out / "scores.jsonl", scores)
        write_json(out / "info.json", _info(value, grad_f, scores, cfg.eval.questions, len(qs), len(names)))

    return run.compute(f"first-order/{target}", params, write, {"data": data})


def _info(value: float, grad_f: list, scores: list[dict], evaluated: str, n_questions: int, n_weights: int) -> dict[str, Any]:
    return {"log_odds": value, "grad_norm": float(sum(float(g.double().pow(2).sum()) for g in grad_f)) ** 0.5,
            "split": scoring_split(evaluated), "evaluated_split": evaluated, "n_questions": n_questions,
            "n_weights": n_weights, "n_rows": len(scores),
            "predicted_change": float(sum(r["contribution"] for r in scores)),
            "units": "nats of log-odds per unit lr, first step"}  # fmt: skip
