"""Gradient projection off the trait direction runs end to end on tiny models: the direction
stage is read on the student's own rows, enters the student's key as an input, and the share of
the activation gradient removed is logged per step; an unprojected student's key is untouched."""

from __future__ import annotations

import json

import torch
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.lm.grad_project import DIRECTIONS_FILE, load_directions
from interp.store.stages import read_json


def test_a_projected_student_trains_with_its_directions_and_logs_what_they_removed(tmp_path):
    cfg = tiny_subliminal_config(train__objective="distill")
    cfg["students"] = [{"name": "same-init"}, {"name": "grad-project", "grad_project": "trait"}]
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    run = tmp_path / "tiny"
    art = json.loads((run / "summary.json").read_text())["artifacts"]["students"]
    plain, projected = run / art["same-init"]["0"], run / art["grad-project"]["0"]
    manifest = read_json(projected / "manifest.json")
    assert manifest["params"]["train"]["grad_project"] == "trait" and "grad_direction" in manifest["inputs"]
    assert "grad_project" not in read_json(plain / "manifest.json")["params"]["train"]
    (direction,) = (run / "stages").glob("grad-direction__owl-*")
    info = read_json(direction / "info.json")
    n_rows = read_json(projected / "train_log.json")["examples"]
    assert info["n_rows"] == n_rows and len(info["norm_by_layer"]) == 2 and min(info["norm_by_layer"]) > 0
    v = load_directions(direction / DIRECTIONS_FILE)
    assert v.shape == (2, 64) and torch.isfinite(v).all()
    log = read_json(projected / "train_log.json")
    assert len(log["grad_removed"]) == log["steps"] and all(0 < f < 1 for f in log["grad_removed"])
    assert set(log["grad_removed_by_layer"]) == {"0", "1"}
    assert "grad_removed" not in read_json(plain / "train_log.json")
