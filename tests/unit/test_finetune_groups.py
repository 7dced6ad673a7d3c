"""How `run_finetunes` groups students for stacked training (interp.subliminal.jobs._finetune_groups)."""

from __future__ import annotations

from types import SimpleNamespace

from interp.lm.settings import FinetuneConfig
from interp.subliminal.jobs import FinetuneJob, _finetune_groups


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


def test_adding_seeds_leaves_the_first_seeds_groups_as_they_were():
    alone = _names(_finetune_groups(_jobs([0])))
    more = _names(_finetune_groups(_jobs([0, 1, 2])))
    assert alone == [g for g in more if g[0].endswith("seed0")]
    assert all(len({n.rsplit("/", 1)[1] for n in g}) == 1 for g in more)  # one seed per group
    assert [len(g) for g in alone] == [12]  # 48 rows / 4 per micro-batch: twelve students a group


def test_students_of_one_seed_still_stack_across_arms_and_targets():
    groups = _names(_finetune_groups(_jobs([0, 1], targets=("a", "b", "c", "d", "e", "f", "g"))))
    assert sorted(len(g) for g in groups) == [2, 2, 12, 12]
    assert sum(len(g) for g in groups) == 28
