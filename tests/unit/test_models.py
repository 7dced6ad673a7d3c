"""Model resolution, prompt formatting, device/dtype handling (CPU-only checks of the GPU path)."""

from __future__ import annotations

import pytest
import torch

from interp.lm import models
from interp.lm.models import ModelError, format_prompt, load_model, resolve_device, resolve_dtype


def test_dtype_and_device_resolution_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16  # the GPU path: bf16
    assert resolve_dtype("float16", cpu) == torch.float16
    with pytest.raises(ModelError, match="unknown dtype"):
        resolve_dtype("fp8", cpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == cpu
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_load_model_places_and_casts():
    model, tok = load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_load_tokenizer_is_load_models_tokenizer_and_names_a_bad_spec():
    tok = models.load_tokenizer("tiny-llama")
    _, ref = load_model("tiny-llama")
    assert tok.padding_side == "left" and tok.pad_token == ref.pad_token and tok.get_vocab() == ref.get_vocab()
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        models.load_tokenizer("no-such-model")


def test_fallback_format_for_models_without_chat_template():
    _, tok = models.tiny_model("tiny-gemma")
    assert not tok.chat_template
    assert format_prompt(tok, "Q?") == "User: Q?\nAssistant:"
    assert format_prompt(tok, "Q?", "Sys.") == "Sys.\n\nUser: Q?\nAssistant:"
    assert models.chat_format(tok).startswith("fallback")
    _, tok2 = models.tiny_model("tiny-llama")
    assert format_prompt(tok2, "Q?", "S") == "<system>S<eos>\n<user>Q?<eos>\n<assistant>"
    assert models.chat_format(tok2) == "chat_template"


def test_tiny_models_are_deterministic_per_seed():
    a, _ = models.tiny_model("tiny-llama", seed=0)
    b, _ = models.tiny_model("tiny-llama", seed=0)
    c, _ = models.tiny_model("tiny-llama", seed=1)
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    g, _ = models.tiny_model("tiny-gemma")
    assert g.config.architectures == ["Gemma3ForCausalLM"] and g.config.num_hidden_layers == 2


def test_unknown_spec_and_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="unknown model 'org/some-model'.*offline"):
        models.check_spec("org/some-model")
    assert models.describe("smollm2-135m-instruct")["source"] == "embedded"
    assert models.describe("org/x")["source"] == "hub"


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
