"""A model's shape from its config alone (checked before any work), its identity by content in
stage keys (GGUF sha256, Hub commit), remote code only when a config trusts it, and no pickle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.cli import main
from interp.lm import models, shape
from interp.store.stages import sha256_file

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # the protocol's
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("spec", ["tiny-llama", "tiny-gemma"])
def test_the_tiny_configs_match_the_tiny_tokenizer(spec):
    tok = models.tiny_tokenizer()
    cfg = models.tiny_config(spec)
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (
        len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)  # fmt: skip


@pytest.mark.parametrize("spec", ["tiny-llama", "tiny-gemma"])
def test_a_tiny_models_shape_is_its_built_modules(spec):
    got = shape.model_shape(spec)
    model, _ = models.tiny_model(spec)
    built = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n and not n.rsplit(".", 1)[-1].isdigit()}
    assert got.n_layers == model.config.num_hidden_layers == 2
    assert got.modules == built and set(LORA_TARGETS) <= got.modules


def _embedded_gguf() -> Path:
    from interp.lm.checkpoints import EMBEDDED, package_dir

    try:
        return package_dir("smollm2-135m-instruct", EMBEDDED["smollm2-135m-instruct"]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    except models.ModelError:
        pytest.skip("the embedded SmolLM2 package is not installed")


def test_the_gguf_header_reader_agrees_with_gguf():
    from gguf import GGUFReader

    path = _embedded_gguf()
    ours = shape.gguf_metadata(path)
    fields = GGUFReader(path).fields
    for key in ("general.architecture", "llama.block_count", "llama.vocab_size", "llama.embedding_length"):
        assert ours[key] == fields[key].contents(), key
    assert ours["tokenizer.ggml.tokens"] == len(fields["tokenizer.ggml.tokens"].data)
    assert shape.model_shape("smollm2-135m-instruct").n_layers == ours["llama.block_count"] == 30


def test_an_embedded_model_is_keyed_by_its_ggufs_sha256(tmp_path, monkeypatch):
    path = _embedded_gguf()
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))  # the size+mtime hash index goes here
    from interp.lm import checkpoints

    # this process may have hashed it already (another test on this worker): forget that here
    monkeypatch.setattr(checkpoints, "_SHA_MEMO", {})
    got = models.describe("smollm2-135m-instruct")
    assert got["gguf_sha256"] == sha256_file(path)
    assert str(path.resolve()) in (tmp_path / "file-hashes.json").read_text()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A local Hugging Face cache holding `org/tiny` (a tiny llama) at COMMIT, and nothing else."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--org--tiny"
    snap = repo / "snapshots" / COMMIT
    model, tok = models.tiny_model("tiny-llama")
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shape.model_shape.cache_clear()
    models.clear_model_cache()
    yield snap
    shape.model_shape.cache_clear()
    models.clear_model_cache()


def test_a_hub_model_is_keyed_and_loaded_at_its_cached_commit(hub, monkeypatch):
    from transformers import AutoModelForCausalLM

    assert models.describe("org/tiny") == {"spec": "org/tiny", "source": "hub", "revision": COMMIT}
    assert models.describe("org/absent")["revision"] is None  # offline, not cached: unknown
    seen = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("revision", "trust_remote_code")})
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    model, _ = models.load_model("org/tiny")
    assert model.config.num_hidden_layers == 2
    assert seen == [{"revision": COMMIT, "trust_remote_code": False}]
    models.clear_model_cache()
    with models.trusting_remote_code(["org/tiny"]):
        models.load_model("org/tiny")
        assert models.describe("org/tiny")["trust_remote_code"] is True  # keyed when on
    assert seen[-1] == {"revision": COMMIT, "trust_remote_code": True}
    assert "trust_remote_code" not in models.describe("org/tiny")  # only inside the block


def test_validate_checks_a_cached_hub_model_and_says_when_it_cannot(hub, tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config(teacher__model="org/tiny"))
    assert main(["validate", str(path), "--set", "teacher.steer_layer=1"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert main(["validate", str(path), "--set", "teacher.steer_layer=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interp: error: {path}: config: teacher.steer_layer = 2 is out of range: model 'org/tiny' has blocks 0-1"]
    assert main(["validate", str(path), "--set", 'teacher.model="org/absent"', "--set", "teacher.steer_layer=9"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"{path}: note: model 'org/absent' is not in the local Hugging Face cache"), out


@pytest.mark.parametrize(
    "override, named",
    [('train.target_modules=["c_attn"]', "train.target_modules ['c_attn'] are not modules of model 'tiny-llama'"),
     ('students=[{name = "a", model = "tiny-gemma", target_modules = ["q_proj", "qkv"]}]',
      "students: 'a': target_modules ['qkv'] are not modules of model 'tiny-gemma'"),
     ("train.layers=[0, 2]", "students: 'same-init' (from train.layers) layers [2] are out of range"),
     ('teacher.mode="finetuned"', None)],
)  # fmt: skip
def test_layers_and_modules_are_checked_against_the_model(tmp_path, capsys, override, named):
    path = write_config(tmp_path, tiny_subliminal_config())
    code = main(["validate", str(path), "--set", override])
    err = capsys.readouterr().err.strip().splitlines()
    if named is None:
        assert code == 0, err
    else:
        assert code == 2 and len(err) == 1 and named in err[0], err


def test_no_pickle_anywhere():
    """Every torch.load is weights_only=True and nothing imports pickle (a checkpoint or cache
    file cannot run code when read)."""
    root = Path(__file__).resolve().parents[2] / "interp"
    bad = []
    for f in sorted(root.rglob("*.py")):
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                bad.append(f"{f.name}: {m.group(0)}")
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M) or "allow_pickle=True" in text:
            bad.append(f"{f.name}: pickle")
    assert not bad, bad
    assert any(root.rglob("*.py"))  # the walk saw the package


def test_a_conversion_of_another_gguf_is_not_reused(tmp_path, monkeypatch):
    from interp.lm.checkpoints import _gguf_changed

    path = _embedded_gguf()
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    for made_from, changed in (("f" * 64, True), (sha256_file(path), False), (None, False)):
        (target / "manifest.json").write_text(json.dumps({"checksums": {}, "gguf_sha256": made_from}))
        why = _gguf_changed("smollm2-135m-instruct", target)
        assert (why is not None) == changed and (not changed or "converted from another GGUF" in why), why
