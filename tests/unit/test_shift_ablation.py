"""Ablating a student's shift along a direction (`interp.lm.steer.ablate_shift`, `interp.mech.ablation`).

A planted student: the tiny llama with MLP biases, plus a delta on block 0's down_proj bias, so
block 0's output moves by exactly `A u (+ B w)` at every position, u and w orthonormal (A is
about the base's residual norm there, ~0.18: large enough to matter, not so large it swamps). Then:
ablating u at block 0 removes the shift along u and nothing else, and (with a pure-u plant)
puts the student back on the base; a covariance-drawn random direction removes almost nothing;
the base's own outputs never change; hooks go away, also when the body raises; the cached
scoring and `generate` paths give what full uncached forwards give under the same ablation.
"""

from __future__ import annotations

import copy

import pytest
import torch

from interp.lm.delta import apply_delta
from interp.lm.generate import encode_prompts, left_pad, positions_from_mask
from interp.lm.models import format_prompt, tiny_model
from interp.lm.score import prompts_continuations_logprobs
from interp.lm.steer import ablate_shift, decoder_layers, n_steering_hooks, remove_shift
from interp.mech.ablation import (
    covariance_directions,
    remove_shift_acts,
    shift_components,
    unit_directions,
)

QUESTIONS = ["Name your favorite animal.", "hi", "Which bird do you like best, and why?"]
D = 64
BIAS = "model.layers.0.mlp.down_proj.bias"
A, B = 0.2, 0.05  # planted shift along u and along w


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _orthonormal(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    q, _ = torch.linalg.qr(torch.randn(D, 2, generator=torch.Generator().manual_seed(seed)))
    return q[:, 0].contiguous(), q[:, 1].contiguous()


def _planted(shift: torch.Tensor):
    """(base, student, tok): student = base + a bias delta moving block 0's output by `shift`."""
    base, tok = tiny_model("tiny-llama", seed=0, mlp_bias=True)
    base.eval()
    student = apply_delta(copy.deepcopy(base), {BIAS: shift})
    return base, student, tok


def _batch(tok):
    ids, mask = left_pad(
        encode_prompts(tok, [format_prompt(tok, q) for q in QUESTIONS]), tok.pad_token_id
    )
    return ids, mask


@torch.no_grad()
def _run(model, ids, mask):
    """(logits, resid_post [batch, pos, layer, d_model]) of a plain uncached forward.

    The capture hooks are appended, so they see what ablate_shift's prepended hooks wrote."""
    outs: dict[int, torch.Tensor] = {}
    layers = decoder_layers(model)
    hooks = [
        blk.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o))
        for i, blk in enumerate(layers)
    ]  # fmt: skip
    try:
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            use_cache=False,
        ).logits
    finally:
        for h in hooks:
            h.remove()
    return logits, torch.stack([outs[i] for i in range(len(layers))], dim=2)


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _dist(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean L2 distance of log-prob vectors over real tokens."""
    la, lb = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    return float((la - lb).norm(dim=-1)[mask.bool()].mean())


# ---------------------------------------------------------------- the math


def test_remove_shift_leaves_only_the_orthogonal_part_of_the_shift():
    gen = torch.Generator().manual_seed(1)
    base_h, shift = torch.randn(5, 7, D, generator=gen), torch.randn(5, 7, D, generator=gen)
    u, w = _orthonormal(2)
    student_h = base_h + shift
    out = remove_shift(student_h, base_h, u)
    torch.testing.assert_close((out - base_h) @ u, torch.zeros(5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close((out - base_h) @ w, shift @ w, atol=1e-5, rtol=0)  # kept
    torch.testing.assert_close(remove_shift(base_h, base_h, u), base_h)  # the base is a fixed point
    assert (shift @ u).abs().max() > 0.5  # there was something to remove


def test_recorded_activations_ablate_each_listed_layer_only():
    gen = torch.Generator().manual_seed(3)
    base_a = torch.randn(6, 3, D, generator=gen)
    student_a = base_a + torch.randn(6, 3, D, generator=gen)
    u, _ = _orthonormal(4)
    dirs = unit_directions(torch.stack([u, u, u]), layers=[-1])
    assert list(dirs) == [2]
    before = shift_components(student_a, base_a, {0: u, 2: u})
    out = remove_shift_acts(student_a, base_a, dirs)
    after = shift_components(out, base_a, {0: u, 2: u})
    torch.testing.assert_close(after[:, 1], torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(after[:, 0], before[:, 0])  # layer 0 not listed: untouched
    torch.testing.assert_close(out[:, :2], student_a[:, :2])
    assert before[:, 1].abs().max() > 0.5


def test_unit_directions_refuse_zero_and_unknown_layers():
    with pytest.raises(ValueError, match="zero"):
        unit_directions({0: torch.zeros(D)})
    with pytest.raises(KeyError, match="layer 5"):
        unit_directions(torch.randn(2, D), layers=[5])


def test_covariance_directions_follow_the_activations_covariance():
    gen = torch.Generator().manual_seed(5)
    scale = torch.full((D,), 0.1)
    scale[0] = 10.0  # almost all the variance along e_0 at layer 0; isotropic at layer 1
    acts = torch.stack(
        [torch.randn(400, D, generator=gen) * scale, torch.randn(400, D, generator=gen)], dim=1
    )
    v = covariance_directions(acts, seed=0, n_draws=50)
    assert v.shape == (50, 2, D)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(50, 2))
    assert v[:, 0, 0].abs().median() > 0.9  # drawn along the high-variance axis
    assert v[:, 1, 0].abs().median() < 0.3  # not where the covariance is isotropic
    torch.testing.assert_close(covariance_directions(acts, seed=0, n_draws=50), v)  # seeded
    assert not torch.allclose(covariance_directions(acts, seed=1, n_draws=50), v)


# ---------------------------------------------------------------- the intervention


def test_ablating_the_planted_direction_removes_the_shift_along_it_only():
    u, w = _orthonormal(0)
    base, student, tok = _planted(A * u + B * w)
    ids, mask = _batch(tok)
    base_logits, base_res = _run(base, ids, mask)
    plain_logits, plain_res = _run(student, ids, mask)
    real = mask.bool()
    before = (plain_res - base_res)[..., 0, :][real]
    torch.testing.assert_close(before @ u, torch.full((int(real.sum()),), A), atol=1e-5, rtol=0)
    with ablate_shift(student, base, {0: u}):
        logits, res = _run(student, ids, mask)
    after = (res - base_res)[..., 0, :][real]
    assert (after @ u).abs().max() < 1e-5  # the shift along u is gone
    torch.testing.assert_close(after @ w, before @ w, atol=1e-5, rtol=0)  # the rest stays
    d_before, d_after = _dist(plain_logits, base_logits, mask), _dist(logits, base_logits, mask)
    assert d_before > 0.05 and d_after < 0.7 * d_before, (d_before, d_after)


def test_a_shift_entirely_along_the_direction_returns_the_student_to_the_base():
    u, _ = _orthonormal(0)
    base, student, tok = _planted(A * u)
    ids, mask = _batch(tok)
    base_logits, base_res = _run(base, ids, mask)
    plain_logits, _ = _run(student, ids, mask)
    assert _dist(plain_logits, base_logits, mask) > 0.05
    for dirs in ({0: u}, {0: u, 1: u}, {-2: u}):
        with ablate_shift(student, base, dirs):
            logits, res = _run(student, ids, mask)
        torch.testing.assert_close(res[mask.bool()], base_res[mask.bool()], atol=1e-5, rtol=0)
        assert _dist(logits, base_logits, mask) < 1e-4


def test_a_covariance_random_direction_removes_almost_nothing():
    u, _ = _orthonormal(0)
    base, student, tok = _planted(A * u)
    ids, mask = _batch(tok)
    base_logits, base_res = _run(base, ids, mask)
    plain_logits, _ = _run(student, ids, mask)
    acts = base_res[mask.bool()]  # [real tokens, layer, d_model]: the base's recorded activations
    v = covariance_directions(acts, seed=0)[0]
    with ablate_shift(student, base, {0: v[0], 1: v[1]}):
        logits, res = _run(student, ids, mask)
    along_u = ((res - base_res)[..., 0, :][mask.bool()]) @ u
    expected = A * (1 - float(u @ v[0]) ** 2)  # only the (small) part of u along v goes
    torch.testing.assert_close(along_u, torch.full_like(along_u, expected), atol=1e-5, rtol=0)
    assert along_u.min() > 0.8 * A
    d_plain, d_control = _dist(plain_logits, base_logits, mask), _dist(logits, base_logits, mask)
    assert d_control > 0.5 * d_plain, (d_plain, d_control)


def test_the_base_is_untouched():
    u, _ = _orthonormal(0)
    base, student, tok = _planted(A * u)
    ids, mask = _batch(tok)
    ref, _ = _run(base, ids, mask)
    n_before = _n_hooks(base)
    with ablate_shift(student, base, {0: u, 1: u}):
        _run(student, ids, mask)
        assert _n_hooks(base) == n_before and n_steering_hooks(base) == 0
        inside, _ = _run(base, ids, mask)
    after, _ = _run(base, ids, mask)
    assert torch.equal(inside, ref) and torch.equal(after, ref)


def test_hooks_are_removed_on_exit_also_when_the_body_raises():
    u, _ = _orthonormal(0)
    base, student, tok = _planted(A * u)
    ids, mask = _batch(tok)
    ref, _ = _run(student, ids, mask)
    n_before = _n_hooks(student)
    with pytest.raises(RuntimeError, match="boom"):
        with ablate_shift(student, base, {0: u}):
            assert _n_hooks(student) > n_before and n_steering_hooks(student) == 1
            _run(student, ids, mask)
            raise RuntimeError("boom")
    assert _n_hooks(student) == n_before and n_steering_hooks(student) == 0
    assert torch.equal(_run(student, ids, mask)[0], ref)


def _perturbed(kind: str):
    """A generic student of a tiny model (random delta on block 0's MLP) and random directions."""
    base, tok = tiny_model(kind, seed=0)
    base.eval()
    gen = torch.Generator().manual_seed(7)
    name = "model.layers.0.mlp.down_proj.weight"
    shape = dict(base.named_parameters())[name].shape
    student = apply_delta(copy.deepcopy(base), {name: 0.5 * torch.randn(shape, generator=gen)})
    dirs = {0: torch.randn(D, generator=gen), 1: torch.randn(D, generator=gen)}
    return base, student, tok, dirs


@torch.no_grad()
def _uncached_logprobs(model, prompt_ids, conts):
    """[prompt, continuation]: summed log-probs from one full uncached forward per pair."""
    out = torch.zeros(len(prompt_ids), len(conts), dtype=torch.float64)
    for i, p in enumerate(prompt_ids):
        for j, c in enumerate(conts):
            logits = model(input_ids=torch.tensor([p + c]), use_cache=False).logits[0]
            lp = torch.log_softmax(logits.float(), -1)[len(p) - 1 : -1]
            out[i, j] = lp.gather(-1, torch.tensor(c)[:, None]).sum()
    return out.numpy()


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_cached_scoring_matches_uncached_forwards_under_the_ablation(kind):
    base, student, tok, dirs = _perturbed(kind)
    prompt_ids = encode_prompts(tok, [format_prompt(tok, q) for q in QUESTIONS])
    conts = [tok(c, add_special_tokens=False)["input_ids"] for c in (" owl", " cat", " x")]
    plain = prompts_continuations_logprobs(
        student, prompt_ids, conts, tok.pad_token_id, batch_size=2
    )
    with ablate_shift(student, base, dirs):
        cached = prompts_continuations_logprobs(
            student, prompt_ids, conts, tok.pad_token_id, batch_size=2
        )
        full = _uncached_logprobs(student, prompt_ids, conts)
    assert abs(cached - full).max() < 1e-4
    assert abs(cached - plain).max() > 1e-2  # the ablation did change the scores


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_generate_matches_uncached_forwards_under_the_ablation(kind):
    base, student, tok, dirs = _perturbed(kind)
    ids = torch.tensor(encode_prompts(tok, ["The owl", "My cat."]))
    with ablate_shift(student, base, dirs):
        out = student.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                               output_logits=True, return_dict_in_generate=True, pad_token_id=tok.pad_token_id)  # fmt: skip
        seq = out.sequences
        with torch.no_grad():
            for step, step_logits in enumerate(out.logits):
                full = student(input_ids=seq[:, : ids.shape[1] + step], use_cache=False).logits[
                    :, -1
                ]
                torch.testing.assert_close(step_logits, full, atol=1e-4, rtol=0)
    with torch.no_grad():
        plain = student(input_ids=ids, use_cache=False).logits[:, -1]
    assert (plain - out.logits[0]).abs().max() > 1e-2


def test_refusals():
    u, _ = _orthonormal(0)
    base, student, tok = _planted(A * u)
    ids, mask = _batch(tok)
    with pytest.raises(ValueError, match="two models"):
        with ablate_shift(student, student, {0: u}):
            pass
    with pytest.raises(IndexError, match="out of range"):
        with ablate_shift(student, base, {2: u}):
            pass
    with torch.no_grad():
        outside = student(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        with ablate_shift(student, base, {0: u}):
            with pytest.raises(ValueError, match="filled outside the context"):
                student(input_ids=ids[:, -1:], past_key_values=outside, use_cache=True)
            with pytest.raises(ValueError, match="inputs_embeds"):
                student(inputs_embeds=student.get_input_embeddings()(ids))
    assert n_steering_hooks(student) == 0
