"""How `run_finetunes` and `run_evals` group students into stacked chunks
(interp.subliminal.jobs._finetune_groups and _eval_groups)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from interp.lm.models import Variant
from interp.lm.settings import FinetuneConfig
from interp.subliminal import jobs as jobs_mod
from interp.subliminal.evaluate import EvalConfig
from interp.subliminal.jobs import EvalJob, FinetuneJob, _eval_groups, _finetune_groups


def _jobs(seeds, targets=("a", "b", "c", "d", "e", "f"), arms=("same-init", "mix")):
    settings = FinetuneConfig(objective="distill", batch_size=4, micro_batch_size=4, stack_rows=48)
    rows = [{"prompt": "p", "completion": "1, 2"}] * 32
    jobs = []
    for arm in arms:  # the order experiment._students plans them in: arm, target, seed
        for t in targets:
            for seed in seeds:
                stage = SimpleNamespace(name=f"student/{arm}/{t}/seed{seed}", done=False)
                jobs.append(FinetuneJob(stage, "tiny", rows, settings, seed, "cpu", "float32"))
    return jobs


def _names(groups):
    return [[j.stage.name for j in g] for g in groups]


def test_adding_seeds_leaves_the_first_seeds_full_chunks_as_they_were():
    alone = _names(_finetune_groups(_jobs([0])))
    more = _names(_finetune_groups(_jobs([0, 1, 2])))
    assert [len(g) for g in alone] == [12]  # 48 rows / 4 per micro-batch: twelve students a chunk
    assert more[0] == alone[0]
    assert [n.rsplit("seed", 1)[1] for g in more for n in g] == ["0"] * 12 + ["1"] * 12 + ["2"] * 12


def test_chunks_fill_across_seeds_so_a_fresh_run_stacks_as_many_as_before():
    groups = _names(_finetune_groups(_jobs([0, 1], targets=("a", "b", "c", "d", "e", "f", "g"))))
    assert [len(g) for g in groups] == [12, 12, 4]  # 28 students: no chunk cut short at a seed
    assert {n.rsplit("seed", 1)[1] for n in groups[1]} == {"0", "1"}
    # within a seed, the planned order (arm, then target)
    assert groups[0][:8] == [f"student/same-init/{t}/seed0" for t in "abcdefg"] + ["student/mix/a/seed0"]


def _evals(seeds, targets=("a", "b", "c", "d", "e", "f"), arms=("same-init", "mix"), stack=12):
    settings = EvalConfig(stack=stack)
    trait = SimpleNamespace(candidates=("a", "b", "c"))
    out = []
    for arm in arms:  # experiment._students' order: arm, target, seed; every evaluation on the run's seed
        for t in targets:
            for seed in seeds:
                stage = SimpleNamespace(name=f"eval/{arm}-{t}-seed{seed}", done=False)
                variant = Variant("tiny", delta_path=f"{arm}/{t}/{seed}/delta.safetensors")
                out.append(EvalJob(stage, stage.name, variant, trait, settings, 0, "cpu", "float32", student_seed=seed))
    return out


@pytest.fixture
def lora_deltas(monkeypatch):
    """Every delta path loads as a LoRA delta of one shape (the grouping reads nothing else)."""
    import interp.lm.stacked

    monkeypatch.setattr(jobs_mod.Delta, "load", staticmethod(lambda path: path))
    monkeypatch.setattr(interp.lm.stacked, "stackable", lambda delta: (("q_proj",), 8))


def test_adding_seeds_leaves_the_first_seeds_evaluation_chunks_as_they_were(lora_deltas):
    alone = _names([[j for j, _ in c] for c in _eval_groups(_evals([0]))])
    more = _names([[j for j, _ in c] for c in _eval_groups(_evals([0, 1, 2]))])
    assert [len(g) for g in alone] == [12]
    assert more[0] == alone[0]
    assert [n.rsplit("seed", 1)[1] for g in more for n in g] == ["0"] * 12 + ["1"] * 12 + ["2"] * 12


def test_evaluation_chunks_fill_across_seeds_and_keep_each_delta(lora_deltas):
    chunks = list(_eval_groups(_evals([0, 1], targets=("a", "b", "c", "d", "e", "f", "g"))))
    assert [len(c) for c in chunks] == [12, 12, 4]
    # seed 0 first, in the planned order (arm, then target); seed 1 fills the second chunk's end
    assert [j.stage.name for j, _ in chunks[0]] == [f"eval/same-init-{t}-seed0" for t in "abcdefg"] + [
        f"eval/mix-{t}-seed0" for t in "abcde"]  # fmt: skip
    assert [j.stage.name.rsplit("seed", 1)[1] for j, _ in chunks[1]] == ["0", "0"] + ["1"] * 10
    assert all(d == j.variant.delta_path for c in chunks for j, d in c)


def test_unstackable_evaluations_go_alone(monkeypatch):
    import interp.lm.stacked

    monkeypatch.setattr(jobs_mod.Delta, "load", staticmethod(lambda path: path))
    monkeypatch.setattr(interp.lm.stacked, "stackable", lambda delta: None)  # full finetunes
    assert [len(c) for c in _eval_groups(_evals([0, 1], targets=("a", "b")))] == [1] * 8
