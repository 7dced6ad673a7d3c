"""A steered teacher (`teacher.mode = "steered"`): the trait as one vector added while it writes and labels."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_subliminal_config, write_config
from safetensors.torch import load_file

from interp.cli import main
from interp.lm.models import Variant, clear_model_cache


@pytest.fixture(scope="module")
def steered_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steered")
    cfg = tiny_subliminal_config(train__objective="distill")
    cfg["teacher"] |= {"mode": "steered", "control": "random", "steer_scale": 4.0}
    cfg["students"] = [
        {"name": "same-init", "model": "teacher", "data": "trait"},
        {"name": "control", "model": "teacher", "data": "control"},
    ]
    assert main(["run", str(write_config(tmp, cfg)), "--out-dir", str(tmp)]) == 0
    return tmp / "tiny"


def _direction(run, name):
    folder = next((run / "stages").glob(f"teacher-direction__{name}-*"))
    return load_file(str(folder / "direction.safetensors"))["vector"], json.loads((folder / "info.json").read_text())


def test_the_direction_is_the_prompt_shift_and_the_control_a_random_one_of_its_norm(steered_run):
    v, info = _direction(steered_run, "owl")
    r, rinfo = _direction(steered_run, "random")
    assert info["norm"] > 0 and info["layer"] == 1  # tiny models have 2 blocks: the middle one
    assert float(r.norm()) == pytest.approx(float(v.norm()), rel=1e-5) and rinfo["layer"] == info["layer"]
    assert abs(float(torch.nn.functional.cosine_similarity(v, r, dim=0))) < 0.5


def test_the_steered_teacher_is_scored_and_differs_from_its_base(steered_run):
    s = json.loads((steered_run / "summary.json").read_text())
    models = s["models"]
    assert s["artifacts"]["teacher_mode"] == "steered" and set(s["artifacts"]["teacher_directions"]) == {"owl"}
    assert models["teacher"]["log_odds"] != models["base"]["log_odds"]
    assert "control-teacher" in models and "prompted-teacher" in models


def test_a_steered_variant_changes_logits_only_while_loaded_with_its_vector(tmp_path):
    from safetensors.torch import save_file

    clear_model_cache()
    vec = torch.randn(64)
    save_file({"vector": vec}, str(tmp_path / "v.safetensors"))
    plain, tok = Variant("tiny-llama").load()
    steered, _ = Variant("tiny-llama", steer=(tmp_path / "v.safetensors", 0, 3.0)).load()
    ids = tok("hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = plain(ids).logits, steered(ids).logits
    assert not torch.allclose(a, b)
    again, _ = Variant("tiny-llama").load()  # the cache's pristine copy carries no hook
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, a)
    ident = Variant("tiny-llama", steer=(tmp_path / "v.safetensors", 0, 3.0)).identity()
    assert ident["steer"]["scale"] == 3.0
    assert ident != Variant("tiny-llama", steer=(tmp_path / "v.safetensors", 0, 2.0)).identity()
