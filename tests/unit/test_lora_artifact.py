"""The LoRA-artefact claims (issue 29) on hand-made cells: each verdict follows its band rule,
a null claim is never "supported" by an interval wider than its margin, and the learning rate
kept per recipe is the one with the largest gamma, every value tried listed."""

from __future__ import annotations

import pytest

from interp.sweep import lora_artifact as la


def cell(point="p", method="lora", rank=8, lr=1e-3, optimizer="adamw", gamma=0.04, lo=0.03, hi=0.05, p=0.0014,
         layers=None, modules="all", objective="soft-full", train_system=True, eval_system=True, seeds=(1, 2, 3)):  # fmt: skip
    return la.Cell(point, method, rank if method == "lora" else None, lr, optimizer, objective, layers, modules,
                   train_system, eval_system, gamma, p, lo, hi, "seeds", list(seeds))  # fmt: skip


REF = cell("ref")  # gamma 0.04: chance band +-0.01, flat band [0.03, 0.05]


@pytest.mark.parametrize("full, result", [
    (cell("f", "full", gamma=0.002, lo=-0.004, hi=0.008), "supported"),        # inside +-0.01
    (cell("f", "full", gamma=0.03, lo=0.02, hi=0.04), "not supported"),       # above the band
    (cell("f", "full", gamma=0.002, lo=-0.03, hi=0.034), "inconclusive"),     # wider than the band
    (cell("f", "full", gamma=0.008, lo=0.004, hi=0.012), "inconclusive"),     # crosses its edge
    (cell("f", "full", gamma=0.0, lo=None, hi=None), "inconclusive"),         # no interval
])  # fmt: skip
def test_full_finetuning_at_chance_follows_the_band(full, result):
    v = la.full_ft_chance([REF, full])
    assert v.result == result, v.reason
    assert v.hypothesis == "lora_artifact_full_ft" and v.effect == full.gamma


def test_sgd_blocks_reads_the_rank8_sgd_cell():
    assert la.sgd_blocks([REF, cell("s", optimizer="sgd", gamma=0.001, lo=-0.005, hi=0.007)]).result == "supported"
    assert la.sgd_blocks([REF, cell("s", optimizer="sgd", gamma=0.02, lo=0.015, hi=0.025)]).result == "not supported"
    with pytest.raises(LookupError, match="SGD"):
        la.sgd_blocks([REF, cell("s", optimizer="signsgd")])


def test_the_rank_curve_is_flat_only_when_every_rank_sits_inside_the_band():
    flat = [REF, cell("r1", rank=1, gamma=0.041, lo=0.035, hi=0.047), cell("r128", rank=128, gamma=0.039, lo=0.032, hi=0.046)]
    assert la.rank_flat(flat).result == "supported"
    wide = [REF, cell("r1", rank=1, gamma=0.041, lo=0.0, hi=0.08), flat[2]]
    assert la.rank_flat(wide).result == "inconclusive"
    bent = [REF, flat[1], cell("r128", rank=128, gamma=0.005, lo=0.0, hi=0.01)]
    v = la.rank_flat(bent)
    assert v.result == "not supported" and "rank 128" in v.reason and v.effect == 0.005


def test_a_single_early_layer_suffices_when_it_transmits_by_the_suites_rule():
    early = cell("l0", layers=(0,), gamma=0.02, lo=0.01, hi=0.03, p=0.0014)
    late = cell("l29", layers=(29,), gamma=0.0, lo=-0.001, hi=0.001, p=0.9)
    assert la.single_early_layer([REF, late, early]).result == "supported"  # the earliest block is read
    assert la.single_early_layer([REF, cell("l0", layers=(0,), gamma=0.02, lo=0.01, hi=0.03, p=0.03)]).result == "inconclusive"
    assert la.single_early_layer([REF, cell("l0", layers=(0,), gamma=0.0, lo=-0.005, hi=0.005, p=0.5)]).result == "not supported"


def test_claims_need_their_cells_and_one_learning_rate_a_recipe():
    verdicts = dict(la.verdicts([cell("full", "full")]))  # no reference
    assert all(v.result == "not testable" and "reference" in v.reason for v in verdicts.values())
    assert {v.hypothesis for v in verdicts.values()} == {h for h, _ in la.CLAIMS.values()}
    with pytest.raises(LookupError, match="several learning rates"):
        la.full_ft_chance([REF, cell("f1", "full", lr=1e-5), cell("f2", "full", lr=3e-5)])


def test_pick_lr_keeps_the_largest_detected_gamma_and_lists_every_value_tried():
    cs = [cell("a", lr=3e-4, gamma=0.01), cell("b", lr=1e-3, gamma=0.03), cell("c", lr=3e-3, gamma=0.02),
          cell("x", lr=1e-2, gamma=0.5, p=0.16),  # large but not detected (a blown-up student): not kept
          cell("d", "full", lr=1e-5, gamma=0.001), cell("e", "full", lr=1e-4, gamma=0.004),
          cell("f", "lora", rank=1, lr=1e-3, gamma=0.002, p=0.3), cell("g", "lora", rank=1, lr=3e-3, gamma=0.001, p=0.2)]  # fmt: skip
    rows = {r["recipe"]: r for r in la.pick_lr(cs)}
    lora = rows["LoRA r8, AdamW, soft-full"]
    assert lora["chosen"] == 1e-3 and not lora["at_edge"] and lora["detected"] and lora["largest_gamma"] == 1e-2
    assert [t[0] for t in lora["tried"]] == [3e-4, 1e-3, 3e-3, 1e-2] and [t[1] for t in lora["tried"]] == [0.01, 0.03, 0.02, 0.5]
    full = rows["full finetuning, AdamW, soft-full"]
    assert full["chosen"] == 1e-4 and full["at_edge"]  # the best at the end of the grid: say so
    r1 = rows["LoRA r1, AdamW, soft-full"]  # nothing detected: the largest gamma, flagged
    assert r1["chosen"] == 1e-3 and not r1["detected"]
