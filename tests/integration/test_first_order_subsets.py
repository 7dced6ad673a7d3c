"""First-order attribution students run end to end on tiny models: the top and bottom arms share
one first-order stage per target and train on their quarter of the rows, and `interp analyze` reports the
rows at either end of its ranking and its Spearman correlation with the scan's."""

from __future__ import annotations

import json
import re

import numpy as np
from helpers import tiny_subliminal_config, write_config
from pypdf import PdfReader
from scipy import stats

from interp.analysis.data_controls import _cut
from interp.cli import main
from interp.store.stages import read_jsonl
from interp.subliminal.data_controls import shuffle_numbers


def test_first_order_arms_train_on_their_ends_and_the_report_shows_them(tmp_path):
    cfg = tiny_subliminal_config(data__n_prompts=12, data__n_keep=8, train__objective="distill")
    cfg["trait"] = {"kind": "animal", "targets": ["owl", "cat"]}
    cfg["teacher"] |= {"mode": "steered", "steer_scale": 4.0, "control": "random"}
    cfg["eval"] |= {"questions": "test"}
    cfg["analysis"] = {"backend": "hf", "n_prompts": 4, "n_boot": 50, "subspace_rank": 0}
    cfg["students"] = [
        {"name": "same-init", "data": "trait"},
        {"name": "control", "data": "control"},
        {"name": "fo-top", "subset": "first-order-top", "subset_fraction": 0.25},
        {"name": "fo-bottom", "subset": "first-order-bottom", "subset_fraction": 0.25},
        {"name": "fo-shuffled", "subset": "first-order-top", "subset_fraction": 0.25, "shuffle": "within"},
    ]
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    run = tmp_path / "tiny"
    for t in ("owl", "cat"):
        # one stage for both unshuffled arms, another for the shuffled one (other rows)
        dirs = {frozenset(_arms_of(run, d)): d for d in (run / "stages").glob(f"first-order__{t}-*")}
        assert set(dirs) == {frozenset({"fo-top", "fo-bottom"}), frozenset({"fo-shuffled"})}
        fo_dir = dirs[frozenset({"fo-top", "fo-bottom"})]
        scores = [r["contribution"] for r in read_jsonl(fo_dir / "scores.jsonl")]
        assert len(scores) == 8 and len(set(scores)) == 8
        for name in ("fo-top", "fo-bottom"):  # each trains on its quarter (the exact rows: the unit tests)
            art = json.loads((run / "summary.json").read_text())["artifacts"]["students"][name]["0"]
            assert json.loads((run / art / "train_log.json").read_text())["examples"] == 2

    assert main(["analyze", str(run), "--only", "data_controls"]) == 0
    dc = json.loads((run / "analysis.json").read_text())["data_controls"]
    block, shuffled = dc["first_order_ends"]
    assert block["arms"] == ["fo-top", "fo-bottom"] and set(block["by_target"]) == {"owl", "cat"}
    for t, e in block["by_target"].items():
        (fo_dir,) = [d for d in (run / "stages").glob(f"first-order__{t}-*") if "fo-top" in _arms_of(run, d)]
        (scan_dir,) = (run / "stages").glob(f"scan__{t}__trait-*")
        fo = [r["contribution"] for r in read_jsonl(fo_dir / "scores.jsonl")]
        scan = [r["llr_per_token"] for r in read_jsonl(scan_dir / "scores.jsonl")]
        assert e["spearman_scan"] == stats.spearmanr(scan, fo).statistic
        assert e["top"][0]["contribution"] == max(fo) and e["bottom"][0]["contribution"] == min(fo)
        assert e["split"] == "dev"
    # the shuffled arm's ends show the rows its stage scored: the shuffled numbers, not the dataset's
    assert shuffled["arms"] == ["fo-shuffled"]
    for t, e in shuffled["by_target"].items():
        (data_dir,) = (run / "stages").glob(f"filter__trait__{t}-*")
        written = [r["completion"] for r in read_jsonl(data_dir / "dataset.jsonl")]
        trained = shuffle_numbers(written, "within", seed=cfg["seed"] * 1_000_003 + e["seed"])  # as stages.student_rows
        shown = e["top"] + e["bottom"]
        assert all(r["completion"] == _cut(trained[r["index"]]) for r in shown)
        assert any(r["completion"] != _cut(written[r["index"]]) for r in shown)
    assert block["spearman_scan_mean"] == np.mean([e["spearman_scan"] for e in block["by_target"].values()])
    # the report renders the section: the rows and the agreement with the scan
    assert main(["report", str(run), "-o", str(tmp_path / "r.pdf")]) == 0
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(tmp_path / "r.pdf").pages))
    assert "First-order attribution (fo-top, fo-bottom)" in text and "Spearman with the scan's LLR per token" in text, text[-3000:]


def _arms_of(run, stage_dir) -> set[str]:
    """The students whose training read this stage (their manifests name it as an input)."""
    out = set()
    for m in (run / "stages").glob("student__*/manifest.json"):
        if f'"{stage_dir.name.rsplit("-", 1)[1]}"' in m.read_text():  # inputs name stages by key
            out.add(m.parent.name.split("__")[1])
    return out
