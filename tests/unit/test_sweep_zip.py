"""Zipped sweep axes: keys that move together (`"train.lora_r,train.lora_alpha" = [[1, 1], [8, 8]]`),
so a grid can tie LoRA alpha to the rank or give each method its own learning-rate range."""

from __future__ import annotations

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.config import ConfigError
from interp.sweep import load_sweep


def _sweep(tmp_path, axes: str):
    write_config(tmp_path, tiny_subliminal_config(), name="base")
    path = tmp_path / "grid.toml"
    path.write_text(f'base = "base.toml"\n[axes]\n{axes}\n')
    return path


def test_a_zipped_axis_sets_its_keys_together_and_multiplies_with_the_others(tmp_path):
    sw = load_sweep(_sweep(tmp_path, '"train.method,train.lora_r,train.lr" = [["lora", 1, 1e-3], ["full", 8, 1e-5]]\n'
                                      '"train.seeds" = [[0], [1]]'))  # fmt: skip
    assert [p.values for p in sw.points] == [
        {"train.method": "lora", "train.lora_r": 1, "train.lr": 1e-3, "train.seeds": [0]},
        {"train.method": "lora", "train.lora_r": 1, "train.lr": 1e-3, "train.seeds": [1]},
        {"train.method": "full", "train.lora_r": 8, "train.lr": 1e-5, "train.seeds": [0]},
        {"train.method": "full", "train.lora_r": 8, "train.lr": 1e-5, "train.seeds": [1]},
    ]
    cfgs = [sw.configs[p.name][1] for p in sw.points]
    assert [(c.train.method, c.train.lora_r, c.train.lr, c.train.seeds) for c in cfgs] == [
        ("lora", 1, 1e-3, [0]), ("lora", 1, 1e-3, [1]), ("full", 8, 1e-5, [0]), ("full", 8, 1e-5, [1])]


@pytest.mark.parametrize("axes, needle", [
    ('"train.lora_r,train.lora_alpha" = [[1, 1], [8]]', r"\[8\]; a zipped axis takes lists of 2 values"),
    ('"train.lora_r,train.lora_alpha" = [1, 8]', r"value 1; a zipped axis takes lists of 2 values"),
    ('"train.lora_r,train.lora_r" = [[1, 1]]', "names each key once"),
    ('"train.lora_r,train.lr" = [[1, 1e-3]]\n"train.lr" = [1e-3, 3e-3]', "key 'train.lr' is in two axes"),
    ('"train.lora_r,name" = [[1, "x"]]', "a point's name is set by the sweep"),
    ('"train.lora_r,train.lora_alpha" = [[1, 1], [1, 1]]', "a value is repeated"),
    ('"train.method,train.lr" = [["lora", 1e-3], ["lorax", 1e-3]]', r"point p001 .*train.method.*lorax"),
])  # fmt: skip
def test_a_bad_zipped_axis_is_one_line_naming_the_file_and_axis(tmp_path, axes, needle):
    path = _sweep(tmp_path, axes)
    with pytest.raises(ConfigError, match=needle) as e:
        load_sweep(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
