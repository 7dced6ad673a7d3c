"""Invariants of activation recording and steering on the tiny random models.

Recording: the three backends (HF hidden states, TransformerBridge hooks, nnsight) agree with
each other and with a direct HF forward; left padding changes nothing; patching a run into
itself changes nothing. Steering: scale 0 is exactly a no-op, a real vector moves resid_post by
exactly scale * vector, project_out leaves no component along the direction, hooks go away.
"""

from __future__ import annotations

import json

import pytest
import torch

from interp.lm.generate import encode_prompts, left_pad
from interp.lm.models import format_prompt, tiny_model
from interp.lm.record import (
    answer_activations,
    bridge_for,
    load_activations,
    nnsight_for,
    positions_from_mask,
    read_index,
    resid_post_from_ids,
    residual_stream,
    save_activations,
)
from interp.lm.steer import add_direction, decoder_layers, n_steering_hooks, project_out

KINDS = ["tiny-llama", "tiny-gemma"]
BACKENDS = ["hf", "transformer_lens", "nnsight"]
ATOL = 1e-5
QUESTIONS = ["Name your favorite animal.", "hi", "Which bird do you like best, and why?"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _model(kind: str, seed: int = 0):
    model, tok = tiny_model(kind, seed)
    tok.padding_side = "left"
    return model.eval(), tok


@pytest.fixture(scope="module", params=KINDS)
def tiny(request):
    model, tok = _model(request.param)
    return model, tok, [format_prompt(tok, q) for q in QUESTIONS]


@torch.no_grad()
def _logits(model, tok, prompts):
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask))
    return out.logits, mask.bool()


# ---------------------------------------------------------------- recording


def test_backends_agree_with_each_other_and_hf_hidden_states(tiny):
    model, tok, prompts = tiny
    acts = {b: residual_stream(model, tok, prompts, backend=b) for b in BACKENDS}
    n_layers = model.config.num_hidden_layers
    assert acts["hf"].shape == (len(prompts), n_layers, model.config.hidden_size)
    for b in BACKENDS[1:]:
        torch.testing.assert_close(acts[b], acts["hf"], atol=ATOL, rtol=0)
    # Against a plain unpadded HF forward per prompt: resid_post[layer] = hidden_states[layer+1]
    # except the last block, whose HF hidden state is after the final norm.
    for i, ids in enumerate(encode_prompts(tok, prompts)):
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            for layer in range(n_layers - 1):
                torch.testing.assert_close(acts["hf"][i, layer], hs[layer + 1][0, -1], atol=ATOL, rtol=0)  # fmt: skip
            final = model.model.norm(acts["hf"][i, -1])
        torch.testing.assert_close(final, hs[-1][0, -1], atol=ATOL, rtol=0)
        assert not torch.allclose(acts["hf"][i, -1], hs[-1][0, -1], atol=1e-3)  # norm matters


def test_backends_agree_at_all_positions(tiny):
    model, tok, prompts = tiny
    acts = {b: residual_stream(model, tok, prompts, backend=b, positions="all") for b in BACKENDS}
    lengths = [len(s) for s in encode_prompts(tok, prompts)]
    assert [a.shape[0] for a in acts["hf"]] == lengths  # pads removed
    last = residual_stream(model, tok, prompts)
    for b in BACKENDS:
        for i, a in enumerate(acts[b]):
            torch.testing.assert_close(a, acts["hf"][i], atol=ATOL, rtol=0)
            torch.testing.assert_close(a[-1], last[i], atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_left_padding_does_not_change_activations(tiny, backend):
    model, tok, prompts = tiny
    batched = residual_stream(model, tok, prompts, backend=backend, batch_size=8)
    single = torch.cat([residual_stream(model, tok, [p], backend=backend) for p in prompts])
    assert len({len(s) for s in encode_prompts(tok, prompts)}) > 1  # padding really happens
    torch.testing.assert_close(batched, single, atol=ATOL, rtol=0)
    all_b = residual_stream(model, tok, prompts, backend=backend, positions="all")
    all_1 = residual_stream(model, tok, prompts, backend=backend, positions="all", batch_size=1)
    for a, b in zip(all_b, all_1):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_answer_activations_are_means_over_answer_tokens(tiny):
    model, tok, prompts = tiny
    answers = [" owl", " cat", " a dog"]
    got = {b: answer_activations(model, tok, prompts, answers, backend=b) for b in BACKENDS}
    per_token = answer_activations(model, tok, prompts, answers, reduce="none")
    for i, (p, a) in enumerate(zip(encode_prompts(tok, prompts), answers)):
        a_ids = tok(a, add_special_tokens=False)["input_ids"]
        assert per_token[i].shape[0] == len(a_ids)
        ref = resid_post_from_ids(model, tok, [p + a_ids], [len(p) + len(a_ids)])[0]
        torch.testing.assert_close(per_token[i], ref[len(p) :], atol=ATOL, rtol=0)
        for b in BACKENDS:
            torch.testing.assert_close(got[b][i], ref[len(p) :].mean(0), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="answers"):
        answer_activations(model, tok, prompts, [" owl", "", " x"])


def test_wrappers_share_weights_and_leave_the_model_untouched():
    model, tok = _model("tiny-llama", seed=1)
    prompts = [format_prompt(tok, q) for q in QUESTIONS]
    keys = list(model.state_dict())
    modules = {n: id(m) for n, m in model.named_modules()}
    attn = model.config._attn_implementation
    assert bridge_for(model, tok) is bridge_for(model, tok)  # cached per model
    nnsight_for(model, tok)
    assert list(model.state_dict()) == keys and {n: id(m) for n, m in model.named_modules()} == modules  # fmt: skip
    assert model.config._attn_implementation == attn
    assert not any("forward" in vars(m) for m in model.modules())  # no nnsight wrappers
    # In-place weight updates show through the cached wrappers (no stale copies).
    before = residual_stream(model, tok, prompts, backend="transformer_lens")
    with torch.no_grad():
        decoder_layers(model)[0].mlp.down_proj.weight.mul_(3.0)
    after = {b: residual_stream(model, tok, prompts, backend=b) for b in BACKENDS}
    assert not torch.allclose(after["hf"], before, atol=1e-3)
    for b in BACKENDS[1:]:
        torch.testing.assert_close(after[b], after["hf"], atol=ATOL, rtol=0)


# ---------------------------------------------------------------- steering


def test_zero_steering_is_a_no_op_and_hooks_are_removed(tiny):
    model, tok, prompts = tiny
    ref, real = _logits(model, tok, prompts)
    n_hooks = [len(layer._forward_hooks) for layer in decoder_layers(model)]  # HF has its own
    v = torch.randn(model.config.hidden_size)
    with add_direction(model, 0, v, scale=0.0):
        assert n_steering_hooks(model) == 1
        steered, _ = _logits(model, tok, prompts)
    assert torch.equal(steered[real], ref[real])
    assert n_steering_hooks(model) == 0
    assert [len(layer._forward_hooks) for layer in decoder_layers(model)] == n_hooks


@pytest.mark.parametrize("layer", [0, 1])
def test_steering_moves_resid_post_by_exactly_the_vector(tiny, layer):
    model, tok, prompts = tiny
    base = residual_stream(model, tok, prompts)  # also installs HF's output-capturing hooks
    ref, real = _logits(model, tok, prompts)
    v = torch.randn(model.config.hidden_size)
    with add_direction(model, layer, v, scale=4.0):
        steered = residual_stream(model, tok, prompts)
        logits, _ = _logits(model, tok, prompts)
        with pytest.raises(RuntimeError, match="steering hooks"):
            residual_stream(model, tok, prompts, backend="nnsight")
    torch.testing.assert_close(steered[:, :layer], base[:, :layer], atol=0, rtol=0)
    torch.testing.assert_close(steered[:, layer] - base[:, layer], 4.0 * v.expand(len(prompts), -1), atol=1e-5, rtol=0)  # fmt: skip
    assert (logits[real] - ref[real]).abs().max() > 1e-2
    torch.testing.assert_close(_logits(model, tok, prompts)[0], ref, atol=0, rtol=0)  # gone


def test_hooks_are_removed_when_the_body_raises(tiny):
    model, tok, prompts = tiny
    ref, _ = _logits(model, tok, prompts)
    u = torch.randn(model.config.hidden_size)
    with pytest.raises(RuntimeError, match="boom"):
        with add_direction(model, 1, u, 10.0), project_out(model, [0, 1], u):
            raise RuntimeError("boom")
    assert n_steering_hooks(model) == 0
    torch.testing.assert_close(_logits(model, tok, prompts)[0], ref, atol=0, rtol=0)


def test_project_out_leaves_no_component_along_the_direction(tiny):
    model, tok, prompts = tiny
    d_model = model.config.hidden_size
    base = residual_stream(model, tok, prompts, positions="all")
    u0, u1 = torch.randn(d_model), torch.randn(d_model)
    with project_out(model, [0, 1], {0: u0, 1: 5 * u1}):  # scale of the direction is irrelevant
        acts = residual_stream(model, tok, prompts, positions="all")
    for a, b in zip(acts, base):
        for layer, u in ((0, u0), (1, u1)):
            comp = a[:, layer] @ (u / u.norm())
            assert comp.abs().max() < 1e-5 * a[:, layer].norm(dim=-1).max()
            assert (b[:, layer] @ (u / u.norm())).abs().max() > 1e-2  # there was one to remove
        assert not torch.allclose(a[:, 1], b[:, 1], atol=1e-3)
    with project_out(model, 1, u1):  # layer 0 untouched by a hook on block 1
        only1 = residual_stream(model, tok, prompts)
    torch.testing.assert_close(only1[:, 0], residual_stream(model, tok, prompts)[:, 0], atol=0, rtol=0)  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_steering_works_in_bfloat16(kind):
    model, tok = _model(kind)
    model.to(torch.bfloat16)
    prompts = [format_prompt(tok, q) for q in QUESTIONS]
    u = torch.randn(model.config.hidden_size)  # float32 vector, bf16 activations
    ref = residual_stream(model, tok, prompts)
    with add_direction(model, 0, u, 0.0):
        torch.testing.assert_close(residual_stream(model, tok, prompts), ref, atol=0, rtol=0)
    with project_out(model, 0, u):
        acts = residual_stream(model, tok, prompts)
    comp = acts[:, 0] @ (u / u.norm())
    assert comp.abs().max() < 2e-2 * acts[:, 0].norm(dim=-1).max()  # bf16 rounding of the result


def test_hooks_handle_tuple_outputs():
    class TupleBlock(torch.nn.Module):  # transformers 4.x decoder layers return (hidden, ...)
        def forward(self, x):
            return x, "cache"

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Module()
            self.model.layers = torch.nn.ModuleList([TupleBlock()])
            self.config = type("C", (), {"hidden_size": 4})()

    fake, x = Fake(), torch.ones(2, 3, 4)
    with add_direction(fake, 0, torch.tensor([1.0, 0, 0, 0]), 2.0):
        h, rest = fake.model.layers[0](x)
    assert rest == "cache" and h[..., 0].eq(3).all() and h[..., 1:].eq(1).all()
    with project_out(fake, [0], torch.tensor([0.0, 2, 0, 0])):
        h, _ = fake.model.layers[0](x)
    assert h[..., 1].eq(0).all() and h[..., 0].eq(1).all()


def test_steering_rejects_bad_arguments(tiny):
    model, _, _ = tiny
    d = model.config.hidden_size
    with pytest.raises(ValueError, match="shape"), add_direction(model, 0, torch.ones(d + 1), 1.0):
        pass
    with pytest.raises(ValueError, match="zero"), project_out(model, 0, torch.zeros(d)):
        pass
    with pytest.raises(IndexError), add_direction(model, 5, torch.ones(d), 1.0):
        pass
    with pytest.raises(KeyError), project_out(model, [0, 1], {0: torch.ones(d)}):
        pass
    assert n_steering_hooks(model) == 0


# ---------------------------------------------------------------- storage


def test_save_load_roundtrip_with_index(tmp_path):
    stacked = torch.randn(3, 2, 8)
    ragged = [torch.randn(5, 2, 8), torch.randn(2, 2, 8)]
    meta = {"model": "tiny-llama", "backend": "hf", "positions": "last", "prompt_set": "q3"}
    path = save_activations(tmp_path / "acts", "resid.last", stacked, meta)
    save_activations(tmp_path / "acts", "resid-all", ragged, {**meta, "positions": "all"})
    assert path.name == "resid.last.safetensors"
    got, entry = load_activations(tmp_path / "acts", "resid.last")
    assert torch.equal(got, stacked)
    assert entry["shape"] == [3, 2, 8] and entry["dtype"] == "float32"
    assert entry["layer_axis"] == 1 and entry["prompt_set"] == "q3" and not entry["ragged"]
    got_r, entry_r = load_activations(tmp_path / "acts", "resid-all")
    assert len(got_r) == 2 and all(torch.equal(a, b) for a, b in zip(got_r, ragged))
    assert entry_r["shape"] == [[5, 2, 8], [2, 2, 8]] and entry_r["positions"] == "all"
    index = json.loads((tmp_path / "acts" / "index.json").read_text())["entries"]
    assert set(index) == {"resid.last", "resid-all"} == set(read_index(tmp_path / "acts"))
    # Overwrite replaces the entry; no temporary files are left behind.
    save_activations(tmp_path / "acts", "resid.last", stacked[:1].to(torch.bfloat16), meta)
    got, entry = load_activations(tmp_path / "acts", "resid.last")
    assert got.dtype == torch.bfloat16 and entry["shape"] == [1, 2, 8]
    assert not [p for p in (tmp_path / "acts").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="missing"):
        save_activations(tmp_path / "acts", "x", stacked, {"model": "m"})
    with pytest.raises(ValueError, match="name"):
        save_activations(tmp_path / "acts", "../x", stacked, meta)
    with pytest.raises(KeyError):
        load_activations(tmp_path / "acts", "absent")


def test_recorded_activations_roundtrip(tmp_path, tiny):
    model, tok, prompts = tiny
    acts = residual_stream(model, tok, prompts, backend="nnsight")
    meta = {"model": "tiny", "backend": "nnsight", "positions": "last", "prompt_set": "q"}
    save_activations(tmp_path, "a", acts, meta)
    torch.testing.assert_close(load_activations(tmp_path, "a")[0], acts, atol=0, rtol=0)
