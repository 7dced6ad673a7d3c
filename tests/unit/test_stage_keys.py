"""Per stage kind: every input that can change a stage's output changes its key; others do not.

A probing RunDir reports every stage as finished, so each stage function returns right after
computing its key and nothing is loaded or trained.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config

from interp.config import build
from interp.lm.models import Variant
from interp.lm.settings import EXECUTION_ONLY, FinetuneConfig
from interp.store.stages import RunDir, Stage
from interp.subliminal import stages as S
from interp.subliminal.config import SubliminalConfig


class _Done(Stage):
    @property
    def done(self) -> bool:
        return True

    def content_id(self) -> str | None:
        return "content"


class Probe(RunDir):
    def stage(self, name, params, inputs=None):  # noqa: ANN001
        real = super().stage(name, params, inputs)
        self.release(real)
        return _Done(real.name, real.key, real.path, real.params, real.inputs, self)


def _cfg(**over) -> SubliminalConfig:
    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["students"] = raw["students"][:2]  # same-init and control: any objective is valid
    for k, v in over.items():
        node = raw
        *parts, last = k.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = v
    return build(SubliminalConfig, raw)


def _key(tmp: Path, kind: str, cfg: SubliminalConfig, device="cpu", dtype="float32", system="You love owls."):  # noqa: ANN001
    run = Probe(tmp, device=device, dtype=dtype)
    teacher = Variant(cfg.teacher.model, system=system)
    trait = cfg.get_trait()
    if kind == "generate":
        return S.generate_stage(cfg, run, f"trait/{trait.target}", teacher).key
    if kind == "filter":
        gen = run.stage("generate/trait", {"x": 1})
        return S.filter_stage(cfg, run, "trait", gen).key
    if kind == "eval":
        return S.eval_stage(cfg, run, "teacher", teacher, trait).key
    if kind == "teacher-answers":
        return S.trait_answers_stage(cfg, run, teacher, trait).key
    if kind == "teacher-direction":
        return S.steering_direction_stage(cfg, run, teacher, trait).key
    if kind == "student":
        data = run.stage("filter/trait", {"x": 1})
        s = cfg.students[0]
        return S.finetune_stage(run, "student/x", cfg.student_model(s), [], s.settings(cfg.train), seed=0,
                                device=cfg.device, dtype=cfg.dtype, inputs={"data": data}, teacher=teacher).key  # fmt: skip
    raise AssertionError(kind)


# kind -> (fields that must change the key, fields that must not)
MATTERS = {
    "generate": (["seed", "data.n_prompts", "data.temperature", "data.max_new_tokens", "data.constraint",
                  "data.batch_size", "teacher.model", "data.threshold"], ["data.n_keep", "eval.n_questions", "train.lr"]),
    "filter": (["data.n_keep", "seed", "data.banned_numbers"], ["data.temperature", "eval.n_questions"]),
    "eval": (["eval.n_questions", "eval.samples_per_question", "eval.temperature", "eval.questions",
              "seed", "trait.target", "trait.candidates"], ["data.n_prompts", "train.lr"]),
    "teacher-answers": (["teacher.answers_per_prompt", "teacher.answer_max_new_tokens", "seed",
                         "trait.target", "teacher.answer_filter"], ["eval.n_questions", "train.lr"]),
    "teacher-direction": (["teacher.steer_layer", "teacher.model", "trait.target"],
                          ["teacher.steer_scale", "data.n_prompts", "eval.n_questions"]),
    "student": (["train.lr", "train.epochs", "train.lora_r", "train.objective", "train.batch_size",
                 "train.warmup_steps", "train.max_seq_len", "train.kl_base", "train.grad_project"],
                ["eval.n_questions", "data.temperature"]),
}  # fmt: skip

CHANGES = {
    "seed": 7, "data.n_prompts": 13, "data.temperature": 0.7, "data.max_new_tokens": 11,
    "data.constraint": "tokens", "data.batch_size": 5, "teacher.model": "tiny-gemma", "data.n_keep": 7,
    "eval.n_questions": 2, "train.lr": 1e-3, "data.banned_numbers": "misalignment",
    "eval.samples_per_question": 3, "eval.temperature": 0.5, "eval.questions": "test",
    "trait.target": "cat", "trait.candidates": ["owl", "cat", "dog", "fox"],
    "teacher.answers_per_prompt": 2, "teacher.answer_max_new_tokens": 9, "teacher.answer_filter": "none",
    "train.epochs": 2, "train.lora_r": 4, "train.objective": "distill", "train.batch_size": 8,
    "train.warmup_steps": 0, "train.max_seq_len": 300, "teacher.steer_layer": 1, "teacher.steer_scale": 2.0,
    "data.threshold": 0.05, "train.kl_base": 0.1, "train.grad_project": "trait",
}  # fmt: skip

CASES = [(kind, f, must) for kind, (yes, no) in MATTERS.items() for f, must in [(f, True) for f in yes] + [(f, False) for f in no]]  # fmt: skip


@pytest.mark.parametrize(("kind", "field", "must_change"), CASES, ids=[f"{k}:{f}" for k, f, _ in CASES])
def test_a_field_changes_a_key_exactly_when_it_matters(tmp_path, kind, field, must_change):
    base = _key(tmp_path, kind, _cfg())
    assert _key(tmp_path, kind, _cfg()) == base  # nothing changed: the same key
    changed = _key(tmp_path, kind, _cfg(**{field: CHANGES[field]}))
    assert (changed != base) == must_change, (kind, field)


@pytest.mark.parametrize("kind", sorted(MATTERS))
def test_the_resolved_device_and_dtype_and_the_system_prompt_enter_every_key(tmp_path, kind):
    base = _key(tmp_path, kind, _cfg())
    assert _key(tmp_path, kind, _cfg(), device="cuda:0") != base
    assert _key(tmp_path, kind, _cfg(), dtype="bfloat16") != base
    # the filter sees the teacher only through its input's key; a hard-label student only
    # through its data; a soft-label student through the teacher's identity as well
    if kind == "student":
        distill = _cfg(**{"train.objective": "distill"})
        assert _key(tmp_path, kind, distill, system="You love cats.") != _key(tmp_path, kind, distill)
        assert _key(tmp_path, kind, _cfg(), system="You love cats.") == base
    elif kind != "filter":
        assert _key(tmp_path, kind, _cfg(), system="You love cats.") != base


def test_finetune_settings_all_enter_the_student_key(tmp_path):
    import dataclasses

    run = Probe(tmp_path)
    data = run.stage("filter/trait", {"x": 1})
    base = FinetuneConfig()
    keyed = [f for f in dataclasses.fields(FinetuneConfig) if f.name not in EXECUTION_ONLY]
    variants = [base] + [dataclasses.replace(base, **{f.name: v}) for f, v in zip(
        keyed,
        ["full", "distill", "numbers", 4, 4, 0.1, ["q_proj"], 2, 1e-3, 1, 2, 1, 0.5, 64, 2.0, 3,
         "sgd", 0.5, [0], "bf16", False, 0.5, "trait"], strict=True)]  # fmt: skip

    def key(st: FinetuneConfig) -> str:
        return S.finetune_stage(run, "student/x", "tiny-llama", [], st, seed=0, device="cpu",
                                dtype="auto", inputs={"data": data}).key  # fmt: skip

    keys = {key(st) for st in variants}
    assert len(keys) == len(variants) == len(keyed) + 1
    # how students are scheduled (stacked or alone) is not part of what they are
    assert key(dataclasses.replace(base, stack_rows=0)) == key(base)


def test_a_shuffle_control_trains_on_moved_numbers_under_its_own_key(tmp_path):
    import dataclasses

    from interp.store.stages import write_jsonl

    cfg, run = _cfg(), Probe(tmp_path)
    data = run.stage("filter/trait", {"x": 1})
    data.path.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": f"p{i}", "completion": f"{i}1, {i}2, {i}3, {i}4"} for i in range(6)]
    write_jsonl(data.path / "dataset.jsonl", rows)
    s = cfg.students[0]
    same, extra, inputs = S.student_rows(cfg, run, s, "owl", 0, data, None, None)
    assert same == rows and extra is None and inputs == {}  # off: the data and the key are what they were
    for how in ("within", "across"):
        moved, extra, _ = S.student_rows(cfg, run, dataclasses.replace(s, shuffle=how), "owl", 0, data, None, None)
        assert extra == {"shuffle": how} and [r["prompt"] for r in moved] == [r["prompt"] for r in rows]
        assert [r["completion"] for r in moved] != [r["completion"] for r in rows]
        keys = {S.finetune_stage(run, "student/x", "tiny-llama", [], s.settings(cfg.train), seed=0, device="cpu",
                                 dtype="auto", inputs={"data": data}, extra=e).key for e in (None, extra)}  # fmt: skip
        assert len(keys) == 2
