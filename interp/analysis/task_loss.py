"""What a defence costs the task: each student's imitation of its teacher on held-out number rows.

A soft-label student is trained to match its teacher's next-token distribution on number
completions. Its task loss here is that quantity on rows no student trained on: the mean per-token
KL(teacher_t || student) over the answer tokens of `n_answer_rows` held-out number prompts with
random answers (`matrix_mechanisms.answer_rows`, the rows every trait-matrix analysis reads), the
teacher reading them under its own prompt (prompted teachers: the target's system prompt;
finetuned ones: their weights) and the student without one, as in training. The base's KL to each
teacher is the same quantity before any training.

Per trait arm on the teacher's base (same-init students, data subsets, mixes, KL penalties,
gradient projection, paraphrases): the KL per (seed, target); `learned` = KL(base) - KL(arm),
the part of the gap to the teacher the arm closed, mean over targets per seed, t-interval over
seeds; and the cost against the reference arm (the first unmodified same-init arm): KL(arm) -
KL(reference), per target averaged over the seeds both trained, t-interval over targets (the pairing
`data_controls` uses for gamma). A defence that blocks transmission by not learning the task at
all shows a large cost here.

Cost: per target, one teacher and one base forward over the rows; per student one load and one
forward (runs/transmission-causal.toml: 18 trait arms x 6 targets x 3 seeds, 324 student forwards
of 10 rows). Each student's KL is a cached stage.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import numpy as np
import torch

from interp.analysis import matrix_mechanisms as mm
from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, ReportDoc
from interp.fmt import fmt, fmt_est
from interp.lm.finetune import tokenize_examples
from interp.lm.loss import Teacher, _kl, completion_logits
from interp.lm.models import Variant, completion_suffix, format_prompt
from interp.lm.settings import Example
from interp.stats import t_interval
from interp.store.stages import stable_hash

log = logging.getLogger("interp")


# ---------------------------------------------------------------- the measure (models in, nats out)


def _rows(tok: Any, prompts: list[str], answers: list[str], teacher_system: str | None) -> list[dict]:
    """Tokenised rows: the student reads the plain prompt, the teacher its own (with its system)."""
    examples = [Example(format_prompt(tok, p, None), a, teacher_prompt=format_prompt(tok, p, teacher_system))
                for p, a in zip(prompts, answers)]  # fmt: skip
    return tokenize_examples(tok, examples, completion_suffix(tok), max_len=10**6, teacher=Teacher(None))


def _pad(tok: Any) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


@torch.no_grad()
def teacher_logprobs(teacher: Any, tok: Any, rows: list[dict], batch_size: int = 16) -> list[torch.Tensor]:
    """Per row, the teacher's log-probs [answer position, vocab] at the positions that predict the answer."""
    device = next(teacher.parameters()).device
    out = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        logits, _ = completion_logits(teacher, batch, _pad(tok), device, key="teacher_ids", n_key="n_teacher_prompt")
        out += list(torch.log_softmax(logits, -1).cpu().split([len(r["teacher_ids"]) - r["n_teacher_prompt"] for r in batch]))
    return out


@torch.no_grad()
def row_kl(student: Any, tok: Any, rows: list[dict], t_logp: list[torch.Tensor], batch_size: int = 16) -> np.ndarray:
    """[row]: mean over each row's answer positions of KL(teacher || student), nats per token."""
    device = next(student.parameters()).device
    out = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        logits, _ = completion_logits(student, batch, _pad(tok), device)
        per_row = logits.split([len(r["input_ids"]) - r["n_prompt"] for r in batch])
        for r, s, t in zip(batch, per_row, t_logp[i : i + batch_size]):
            sel = torch.tensor(r["s_sel"], dtype=torch.long)
            out.append(float(_kl(t[sel].to(s.device), s[sel], 1.0).mean()))
    return np.asarray(out)


# ---------------------------------------------------------------- the statistics (pure)


def arm_summary(kl: np.ndarray, base: np.ndarray, ref: np.ndarray | None, ci: float = 0.95,
                seeds: list[int] | None = None, ref_seeds: list[int] | None = None) -> dict[str, Any]:  # fmt: skip
    """kl [seed, target] of one arm (its seeds `seeds`, default 0..n-1), base [target], ref
    [seed', target] of the reference arm (its seeds `ref_seeds`; the two pair on the seeds they
    share; None: the arm is the reference)."""
    kl, base = np.asarray(kl, float), np.asarray(base, float)
    if kl.ndim != 2 or base.shape != kl.shape[1:]:
        raise ValueError(f"kl must be [seed, target] and base [target], got {kl.shape} and {base.shape}")
    seeds = list(range(len(kl))) if seeds is None else list(seeds)
    out: dict[str, Any] = {
        "kl": t_interval(kl.mean(1), ci).to_dict() | {"over": "seeds"},
        "learned": t_interval((base - kl).mean(1), ci).to_dict() | {"over": "seeds"},
        "kl_per_seed_target": kl.round(6).tolist(),
    }
    if ref is not None:
        ref = np.asarray(ref, float)
        ref_seeds = list(range(len(ref))) if ref_seeds is None else list(ref_seeds)
        shared = [sd for sd in seeds if sd in ref_seeds]
        if not shared:
            return out
        a = kl[[seeds.index(sd) for sd in shared]]
        b = ref[[ref_seeds.index(sd) for sd in shared]]
        out["minus_reference"] = t_interval((a - b).mean(0), ci).to_dict() | {"over": "targets", "seeds": shared}
        gap = float((base - b).mean())
        out["fraction_of_reference_learned"] = float((base - a).mean() / gap) if gap else None
    return out


# ---------------------------------------------------------------- the run


def _arms(ctx: AnalysisRun) -> list[str]:
    """Every trait arm on the teacher's base (the reference, the unmodified same-init arm, first)."""
    return [n for n, s in ctx.students.items() if s.get("data", "trait") == "trait" and ctx.spec_of(n) == ctx.teacher_spec]


def _reference(ctx: AnalysisRun, arms: list[str]) -> str | None:
    from interp.analysis.data_controls import variant_of

    return next((n for n in arms if variant_of(ctx.student_cfg(n)) == "unmodified"), None)


def task_loss(ctx: AnalysisRun) -> dict[str, Any] | None:
    """Per trait arm: its students' KL to their teachers on held-out number rows, vs the base and the reference."""
    prompts, answers = mm.answer_rows(ctx.a.n_answer_rows, ctx.cfg["seed"])
    targets = ctx.summary["trait"]["targets"]
    spec, ci = ctx.teacher_spec, ctx.config.eval.ci
    teachers, _, what = mm._teachers(ctx, spec)
    arms = _arms(ctx)
    by_t = {n: ctx.art["students_by_target"][n] for n in arms}
    seeds = {n: sorted(by_t[n][targets[0]], key=int) for n in arms}
    base_variant = Variant(spec)
    base_model, tok = base_variant.load(ctx.device, ctx.dtype)
    rows_hash = stable_hash([prompts, answers])
    kl = {n: np.zeros((len(seeds[n]), len(targets))) for n in arms}
    base_kl = np.zeros(len(targets))
    for j, (t, teacher) in enumerate(zip(targets, teachers)):
        rows = _rows(tok, prompts, answers, teacher.system)
        t_logp: list[torch.Tensor] | None = None

        def labels(teacher=teacher, rows=rows) -> list[torch.Tensor]:
            nonlocal t_logp
            if t_logp is None:
                model, _ = teacher.load(ctx.device, ctx.dtype)
                t_logp = teacher_logprobs(model, tok, rows, ctx.a.batch_size)
                del model
                gc.collect()
            return t_logp

        common = {"teacher": teacher.identity(), "rows": rows_hash, "measure": "kl(teacher||model) per answer token"}
        res = ctx.run.compute_json(f"analysis/task-loss/base-{t}", common | {"model": base_variant.identity()},
                                   lambda rows=rows: {"kl": row_kl(base_model, tok, rows, labels(rows=rows)).tolist()},
                                   filename="kl.json")  # fmt: skip
        base_kl[j] = float(np.mean(res["kl"]))
        for n in arms:
            for s, sd in enumerate(seeds[n]):
                variant = Variant(spec, delta_path=ctx.path(by_t[n][t][sd]) / "delta.safetensors")

                def make(variant=variant, rows=rows) -> dict[str, Any]:
                    log.info("task loss: %s", variant.delta_path.parent.name)
                    student, _ = variant.load(ctx.device, ctx.dtype)
                    out = row_kl(student, tok, rows, labels(rows=rows), ctx.a.batch_size).tolist()
                    del student
                    gc.collect()
                    return {"kl": out}

                res = ctx.run.compute_json(f"analysis/task-loss/{n}-{t}-seed{sd}", common | {"model": variant.identity()},
                                           make, filename="kl.json")  # fmt: skip
                kl[n][s, j] = float(np.mean(res["kl"]))
        gc.collect()
    if not arms:
        return None
    ref = _reference(ctx, arms)
    return {
        "rows": f"{len(prompts)} held-out number prompts with random answers (matrix_mechanisms.answer_rows)",
        "measure": "mean per answer token of KL(teacher || model), nats", "teachers": what,
        "targets": targets, "base_kl": base_kl.round(6).tolist(), "reference": ref,
        "arms": {n: arm_summary(kl[n], base_kl, None if n == ref or ref is None else kl[ref], ci,
                                [int(x) for x in seeds[n]], [int(x) for x in seeds[ref]] if ref else None) for n in arms},
    }  # fmt: skip


# ---------------------------------------------------------------- report


def render_task_loss(doc: ReportDoc, run: str, tl: dict[str, Any]) -> None:
    doc.heading("Task loss: how well each arm imitates its teacher on held-out rows", 3)
    rows = [["student", "KL to teacher [CI]", "learned: base - arm [CI]", "minus reference [CI]", "share of reference's"]]
    for name, a in (tl.get("arms") or {}).items():
        rows.append([name, fmt_est(a.get("kl")), fmt_est(a.get("learned")), fmt_est(a.get("minus_reference")),
                     fmt(a.get("fraction_of_reference_learned"))])  # fmt: skip
    doc.table(rows, [1.8, 1.9, 2.0, 2.0, 1.3])
    base = tl.get("base_kl") or []
    doc.para(f"Mean per answer token of KL(teacher || student), nats, on {tl.get('rows')}; the teacher "
             f"reads them with its own prompt, the student without ({tl.get('teachers')}). The base's KL "
             f"to the teachers, before training: {fmt(float(np.mean(base)) if base else None)}. learned: the "
             f"gap to the teacher each arm closed, CI over seeds; minus reference: the arm's KL minus the "
             f"reference arm's ({tl.get('reference')}), per target averaged over shared seeds, CI over "
             "targets. A defence whose students learn little of the task costs a large positive difference.")  # fmt: skip


def _skip(ctx: AnalysisRun) -> str | None:
    why = mm.opt_in_skip(ctx, "task_loss")
    if why or _arms(ctx):
        return why
    return "no trait arm on the teacher's base"


ANALYSIS = Analysis(
    name="task_loss", render=render_task_loss, report_when_absent=False, title="Task loss", compute=task_loss,
    skip=_skip, needs="every target's teacher; the trait arms' students on the teacher's base, re-read on held-out rows",
)  # fmt: skip
