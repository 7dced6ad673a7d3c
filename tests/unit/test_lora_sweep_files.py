"""The LoRA-artefact sweep files (issue 29) validate and plan, and the held-out one can test every
claim: it holds the reference and each claim's cell, one learning rate a recipe, each rate one the
development sweep tried for that recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.sweep import load_sweep, plan

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def _recipes(sweep) -> dict[tuple, set[float]]:
    out: dict[tuple, set[float]] = {}
    for p in sweep.points:
        cfg = sweep.configs[p.name][1]
        st = cfg.students[0].settings(cfg.train)
        key = (st.method, st.lora_r if st.method == "lora" else None, st.optimizer, st.objective, st.distill_vocab,
               tuple(st.layers or ()), tuple(st.target_modules), st.default_system_prompt, cfg.eval.default_system_prompt)  # fmt: skip
        out.setdefault(key, set()).add(st.lr)
    return out


@pytest.mark.parametrize("name, n_points", [("lora-rank-dev-cpu", 22), ("lora-rank-dev", 102), ("lora-rank", 14)])
def test_the_sweep_files_validate_and_plan(tmp_path, name, n_points):
    sweep = load_sweep(SWEEPS / f"{name}.toml")
    assert len(sweep.points) == n_points
    rows = plan(sweep, out_dir=tmp_path)
    assert [r["task"] for r in rows if r["task"].startswith("run-")] == [f"run-{p.name}" for p in sweep.points]
    assert all(r["state"].startswith("to run") for r in rows)  # nothing of it in an empty folder


def test_the_held_out_sweep_holds_every_claims_cell_at_a_rate_the_dev_sweep_tried():
    held, dev = load_sweep(SWEEPS / "lora-rank.toml"), load_sweep(SWEEPS / "lora-rank-dev-cpu.toml")
    recipes = _recipes(held)
    assert all(len(lrs) == 1 for lrs in recipes.values()), recipes
    tried = {(k[0], k[1], k[2]): lrs for k, lrs in _recipes(dev).items()}
    all30 = tuple(range(30))
    for (method, rank, opt, *_rest), lrs in recipes.items():
        if (method, rank, opt) in tried:
            assert lrs <= tried[(method, rank, opt)], (method, rank, opt, lrs)
    cells = {(k[0], k[1], k[2], k[5]) for k in recipes}
    for needed in [("lora", 8, "adamw", all30), ("full", None, "adamw", all30), ("lora", 1, "adamw", all30),
                   ("lora", 128, "adamw", all30), ("lora", 8, "sgd", all30), ("lora", 8, "adamw", (0,))]:  # fmt: skip
        assert needed in cells, needed
    # the reference's students are scored both with and without SmolLM2's default system prompt
    ref = [k for k in recipes if k[:3] == ("lora", 8, "adamw") and k[5] == all30 and len(k[6]) == 7 and k[7]]
    assert {k[8] for k in ref} == {True, False}
