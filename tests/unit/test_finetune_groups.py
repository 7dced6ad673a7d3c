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
