"""The training-time defences run end to end on tiny models: a student with a KL-to-base
penalty, and students with control rows mixed into their trait data (the control teacher's
data is written for them although no student trains on control data alone)."""

from __future__ import annotations

import json

from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.store.stages import read_json, read_jsonl


def _stage(run, name):  # noqa: ANN001, ANN202
    art = json.loads((run / "summary.json").read_text())["artifacts"]["students"][name]
    return run / art["0"]


def test_defended_students_train_and_are_scored(tmp_path):
    cfg = tiny_subliminal_config(train__objective="distill")
    cfg["teacher"] |= {"control": "neutral"}
    cfg["students"] = [{"name": "same-init"}, {"name": "mixed", "mix_control": 0.5},
                       {"name": "mixed-sft", "mix_control": 0.25, "objective": "sft"}, {"name": "kl", "kl_base": 2.0}]  # fmt: skip
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    run = tmp_path / "tiny"
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["students"]) == {"same-init", "mixed", "mixed-sft", "kl"}
    (control,) = (run / "stages").glob("filter__control-*")  # written for the mixed students alone
    n = len(read_jsonl(control / "dataset.jsonl"))
    (trait,) = (run / "stages").glob("filter__trait__owl-*")
    n_trait = len(read_jsonl(trait / "dataset.jsonl"))
    assert n > 0 and n_trait > 1
    for name, fraction in (("mixed", 0.5), ("mixed-sft", 0.25)):
        stage = _stage(run, name)
        manifest = read_json(stage / "manifest.json")
        assert manifest["params"]["mix_control"] == fraction and "control_data" in manifest["inputs"]
        assert read_json(stage / "train_log.json")["examples"] == n_trait  # the same row count
    assert read_json(_stage(run, "kl") / "manifest.json")["params"]["train"]["kl_base"] == 2.0
    assert "kl_base" not in read_json(_stage(run, "same-init") / "manifest.json")["params"]["train"]
