"""The LoRA-artefact study end to end on tiny models (issue 29): a sweep over method, rank and
learning rate with a zipped axis, its PDF with the study's section, `interp report` on the sweep
folder, the learning-rate pick and every claim's hypothesis script (a VERDICT line each)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.sweep import load_sweep, run_sweep
from interp.sweep import lora_artifact as la

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"lora_artifact": "lora_artifact_full_ft", "lora_rank_flat": "lora_artifact_rank_flat",
           "lora_single_layer": "lora_artifact_single_layer", "lora_sgd": "lora_artifact_sgd"}  # fmt: skip
GRID = """base = "base.toml"
[set]
"train.seeds" = [0, 1]
[axes]
"train.method,train.lora_r,train.lora_alpha,train.optimizer,train.lr,train.layers" = [
    ["lora", 8, 8, "adamw", 3e-2, [0, 1]], ["lora", 1, 1, "adamw", 3e-2, [0, 1]],
    ["full", 8, 8, "adamw", 1e-3, [0, 1]], ["lora", 8, 8, "sgd", 1.0, [0, 1]], ["lora", 8, 8, "adamw", 3e-2, [0]],
]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    cfg = tiny_subliminal_config()
    cfg["trait"] = {"kind": "animal", "targets": ["owl", "fox"]}
    cfg["students"] = [{"name": "student", "model": "teacher", "data": "trait"}]
    cfg["train"] |= {"objective": "distill"}
    write_config(tmp, cfg, name="base")
    (tmp / "grid.toml").write_text(GRID)
    sweep = load_sweep(tmp / "grid.toml")
    run_sweep(sweep, engine="local", out_dir=tmp / "out")
    return tmp, sweep, tmp / "out" / "grid"


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(path)).pages))


def test_every_point_becomes_a_cell_with_its_recipe_and_gamma(swept):
    _, sweep, root = swept
    cs, missing = la.cells(sweep, root, norms=True)
    assert not missing and [c.point for c in cs] == [f"p00{i}" for i in range(5)]
    # [0, 1] names every block of the tiny model: read as "every block" (the reference's)
    assert [(c.method, c.rank, c.optimizer, c.layers) for c in cs] == [
        ("lora", 8, "adamw", None), ("lora", 1, "adamw", None), ("full", None, "adamw", None),
        ("lora", 8, "sgd", None), ("lora", 8, "adamw", (0,))]
    assert cs[0].is_reference() and not cs[4].is_reference()
    for c in cs:
        summary = json.loads((root / "points" / c.point / "summary.json").read_text())
        arm = summary["matrix"]["arms"]["student"]
        assert c.gamma == arm["gamma"] and c.per_seed == arm["gamma_per_seed"] and c.interval == "seeds"
        assert (c.lo, c.hi) == (arm["gamma_ci"]["lo"], arm["gamma_ci"]["hi"])
        assert c.update_norm is not None and c.update_norm > 0
    # ||dW||: the mean over the arm's students of the merged update's Frobenius norm
    import torch

    from interp.lm.delta import Delta

    rank1 = json.loads((root / "points" / "p001" / "summary.json").read_text())["artifacts"]["students_by_target"]["student"]
    dense = [Delta.load(root / "points" / "p001" / rel / "delta.safetensors").to_dense()
             for seeds in rank1.values() for rel in seeds.values()]  # fmt: skip
    direct = sum(torch.sqrt(sum((w.double() ** 2).sum() for w in d.values())).item() for d in dense) / len(dense)
    assert len(dense) == 4 and cs[1].update_norm == pytest.approx(direct, rel=1e-4)


def test_the_sweep_pdf_and_interp_report_on_the_folder_carry_the_study(swept, tmp_path, capsys):
    _, _, root = swept
    text = _pdf_text(root / "sweep.pdf")
    assert "Is transmission a LoRA artefact?" in text and "Verdicts (margins fixed before the runs)" in text
    assert "Figure 1 (lora_rank)" in text
    out = tmp_path / "again.pdf"
    assert main(["report", str(root), "-o", str(out)]) == 0
    again = _pdf_text(out)
    for claim in la.CLAIMS:
        assert claim in again
    assert main(["report", str(root), str(root / "points" / "p000")]) == 2  # a sweep folder goes alone
    assert "is a sweep folder; give it alone" in capsys.readouterr().err


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_claim_script_prints_its_verdict_as_the_study_computes_it(swept, script):
    tmp, sweep, root = swept
    out = subprocess.run([sys.executable, str(ROOT / "analyses" / f"{script}.py"), str(tmp / "grid.toml"),
                          "--out-dir", str(tmp / "out")], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": ""})  # fmt: skip
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"VERDICT hypothesis={SCRIPTS[script]} "), out.stdout + out.stderr
    expected = dict(la.verdicts(la.cells(sweep, root)[0]))
    v = next(v for v in expected.values() if v.hypothesis == SCRIPTS[script])
    assert f"result={v.result} " in last
    # the single-layer claim reads the one-block point (p004); the others read p000 as the reference
    assert v.result != "not testable", v.reason


def test_a_script_without_its_sweep_folder_is_not_testable(tmp_path):
    write_config(tmp_path, tiny_subliminal_config(), name="base")
    (tmp_path / "grid.toml").write_text('base = "base.toml"\n[axes]\n"train.lora_r" = [1, 8]\n')
    out = subprocess.run([sys.executable, str(ROOT / "analyses" / "lora_artifact.py"), str(tmp_path / "grid.toml")],
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": ""})  # fmt: skip
    assert "result=not testable" in out.stdout.splitlines()[-1] and "run `interp sweep" in out.stdout


def test_pick_lists_every_learning_rate_per_recipe(swept, capsys):
    tmp, _, _ = swept
    assert la.main(["pick", str(tmp / "grid.toml"), "--out-dir", str(tmp / "out")]) == 0
    out = capsys.readouterr().out
    assert "LoRA r8, AdamW, soft-full: chosen lr 0.03" in out
    assert "full finetuning, AdamW, soft-full: chosen lr 0.001" in out
    assert out.count("||dW||") == 5
