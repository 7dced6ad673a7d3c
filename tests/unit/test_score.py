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
