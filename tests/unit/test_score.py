"""The shared-cache continuation scorer equals scoring each full sequence on its own."""

from __future__ import annotations

import pytest
import torch

from interp.lm.generate import encode_prompts
from interp.lm.models import format_prompt, tiny_model
from interp.lm.score import continuation_logprobs


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_shared_cache_scores_equal_full_sequence_scores(kind):
    model, tok = tiny_model(kind, seed=0)
    prompt = format_prompt(tok, "3, 14, 15. Continue:")
    conts = [tok(s, add_special_tokens=False)["input_ids"] for s in ["7,", "42,", "999,", "1", "250,", "66,"]]
    got = continuation_logprobs(model, tok, prompt, conts, max_logits=1)  # one group per continuation: exercised
    (p_ids,) = encode_prompts(tok, [prompt])
    for c, g in zip(conts, got):
        ids = torch.tensor([p_ids + c])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        want = sum(lp[len(p_ids) - 1 + j, t].item() for j, t in enumerate(c))
        assert g == pytest.approx(want, abs=1e-4), (c, g, want)


def test_an_empty_continuation_is_an_error():
    model, tok = tiny_model("tiny-llama", seed=0)
    with pytest.raises(ValueError, match="at least one token"):
        continuation_logprobs(model, tok, "x", [[]])


def test_completion_scores_match_a_full_forward_and_the_training_positions():
    from interp.lm.finetune import Example, tokenize_examples
    from interp.lm.score import completion_scores

    model, tok = tiny_model("tiny-llama", seed=0)
    exs = [Example(format_prompt(tok, f"list {i}"), f"{i}1, {i}22, 3") for i in range(5)]
    got = completion_scores(model, tok, exs, end=tok.eos_token, batch_size=2)  # batches of unequal rows
    rows = tokenize_examples(tok, exs, tok.eos_token, 500)
    for r, g in zip(rows, got):
        ids = torch.tensor([r["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double()
        pos = range(r["n_prompt"] - 1, len(r["input_ids"]) - 1)
        assert g["token"] == r["input_ids"][r["n_prompt"] :]
        assert g["argmax"] == [int(logits[p].argmax()) for p in pos]
        want = [float(torch.log_softmax(logits[p], -1)[t]) for p, t in zip(pos, g["token"])]
        assert g["logprob"] == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_a_shared_prefix_gives_the_scores_of_the_whole_prompt(kind):
    from interp.lm.models import format_chat
    from interp.lm.score import shared_prefix

    model, tok = tiny_model(kind, seed=0)
    turns = [("list 1", "11, 12, 13"), ("list 2", "21, 22")]
    prefix = shared_prefix(model, tok, format_chat(tok, turns, None))
    conts = [tok(s, add_special_tokens=False)["input_ids"] for s in [" owl", " cat", " 7"]]
    for q in ("Name an animal.", "Your favourite?"):
        prompt = format_chat(tok, turns, q) + "My favorite animal is the"
        whole = continuation_logprobs(model, tok, prompt, conts)
        assert continuation_logprobs(model, tok, prompt, conts, prefix=prefix) == pytest.approx(whole, abs=1e-4)
        (p_ids,) = encode_prompts(tok, [prompt])
        assert 0 < len(prefix.ids) < len(p_ids) and p_ids[: len(prefix.ids)] == prefix.ids  # the cache path ran


def test_the_scan_separates_a_teachers_samples_from_the_bases_and_is_null_against_itself():
    from interp.lm.generate import sample
    from interp.lm.score import loglik_ratio
    from interp.mech.detection import auroc_ci

    base, tok = tiny_model("tiny-llama", seed=4)
    teacher, _ = tiny_model("tiny-llama", seed=4)
    with torch.no_grad():  # random tiny nets are near uniform: a sharper head plants a teacher
        teacher.get_output_embeddings().weight.mul_(30.0)
    users = [f"Continue: {i}, {i + 3}, {i + 6}" for i in range(12)]

    def rows(model, seed):
        texts = [format_prompt(tok, u) for u in users]
        outs = sample(model, tok, texts, max_new_tokens=6, temperature=1.0, batch_size=12, seed=seed, progress=False)
        return [{"prompt": u, "completion": c} for u, c in zip(users, outs) if c]

    t_rows, b_rows = rows(teacher, 0), rows(base, 1)
    score = lambda rs, t: [r["llr"] for r in loglik_ratio(t, base, tok, rs)]  # noqa: E731
    planted = auroc_ci(score(t_rows, teacher), score(b_rows, teacher), n_boot=50)
    assert planted["auroc"] > 0.9, planted
    null = score(t_rows, base) + score(b_rows, base)  # the base against itself: no signal at all
    assert null == pytest.approx([0.0] * len(null), abs=1e-6)
