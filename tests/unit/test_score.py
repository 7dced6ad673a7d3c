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
    got = continuation_logprobs(model, tok, prompt, conts, chunk=2)  # chunks cut groups: exercised
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
