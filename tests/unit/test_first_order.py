"""The theorem's first-order prediction (interp.analysis.first_order): the predicted log-odds
change of one gradient step equals a finite difference of the evaluator's own log-odds, for
hard labels and for soft labels; the parameter set follows the student's settings; the
comparison finds a planted match and no match in a shuffled one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.analysis.first_order import (
    across_arms,
    candidate_logprob_gradients,
    compare,
    predicted_shifts,
)
from interp.lm.finetune import Example, FinetuneConfig, trained_weights
from interp.lm.loss import Teacher
from interp.lm.models import format_prompt, tiny_model
from interp.mech.gradient import iter_imitation_gradients
from interp.subliminal.evaluate import candidate_logprobs
from interp.subliminal.matrix import log_odds

torch.set_num_threads(1)

CANDIDATES = ["owl", "cat", "dolphin"]  # multi-token candidates under a char-level tokenizer


def _examples(tok, system=None):
    return [Example(format_prompt(tok, f"numbers {i}"), f"{i}3, {i}7, 1{i}", format_prompt(tok, f"numbers {i}", system))
            for i in range(4)]  # fmt: skip


@pytest.mark.parametrize("objective", ["sft", "distill"])
def test_predicted_shift_equals_a_finite_difference_of_the_evaluated_log_odds(objective):
    model, tok = tiny_model("tiny-llama", seed=0)
    model = model.double()
    tok.padding_side = "right"
    settings = FinetuneConfig(objective=objective, layers=[1])
    teacher = None
    if objective == "distill":  # soft labels from a differently initialised teacher of the same tokenizer
        t_model, _ = tiny_model("tiny-llama", seed=1)
        teacher = Teacher(t_model.double())
    names = trained_weights(model, settings)
    examples = _examples(tok, "You love owls.")
    (g,) = iter_imitation_gradients(model, tok, examples, names, 4, tok.eos_token, settings=settings, teacher=teacher)
    prompts = [format_prompt(tok, q) + "My favorite animal is the" for q in ("Which animal?", "Name one.")]
    grads = candidate_logprob_gradients(model, tok, prompts, CANDIDATES, names, batch_size=1)
    pred, base_lp = predicted_shifts([g], grads)

    # the scorer is the evaluator's (which reads log-probs in float32)
    assert base_lp == pytest.approx(candidate_logprobs(model, tok, prompts, CANDIDATES).mean(0), rel=1e-6)

    def evaluated():  # the same log-odds in float64, for a finite difference at eps = 1e-4
        values = [v for v, _ in candidate_logprob_gradients(model, tok, prompts, CANDIDATES, names)]
        return log_odds(np.array([values]))

    before = evaluated()
    eps = 1e-4
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n] -= eps * g[n]
    after = evaluated()
    fd = (after - before) / eps
    assert np.abs(pred[0]).max() > 1e-4  # a non-trivial check
    assert fd == pytest.approx(pred[0], rel=2e-3, abs=1e-6)


def test_the_parameter_set_follows_the_students_settings():
    model, _ = tiny_model("tiny-llama", seed=0)
    lora = trained_weights(model, FinetuneConfig(method="lora", target_modules=["q_proj", "down_proj"], layers=[1]))
    assert lora == ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    full = trained_weights(model, FinetuneConfig(method="full"))
    assert full == [n for n, _ in model.named_parameters()]
    one = trained_weights(model, FinetuneConfig(method="full", layers=[0]))
    assert one and all(n.startswith("model.layers.0.") for n in one)
    with pytest.raises(ValueError, match="no parameter"):
        trained_weights(model, FinetuneConfig(method="lora", target_modules=["nope"]))


def test_compare_finds_a_planted_match_and_not_a_relabelled_one():
    rng = np.random.default_rng(0)
    cols = [0, 1, 2, 3, 4]
    observed = rng.normal(size=(5, 8)) + 2 * np.eye(5, 8)
    planted = compare(observed * 3.0, observed, cols)  # the same pattern at another scale
    assert planted["row_correlation"] == pytest.approx(1.0) and planted["p_row_correlation"] == pytest.approx(1 / 120)
    assert planted["predicted_gamma"] == pytest.approx(3 * planted["observed_gamma"])
    shuffled = compare(np.roll(observed, 1, axis=0), observed, cols)  # each row predicted from another target
    assert shuffled["p_row_correlation"] > 0.05
    # two arms whose predictions differ in scale by 1000x: standardised within arm, both patterns count
    r = across_arms([([1.0, 2.0, 3.0], [1.1, 1.9, 3.2]), ([1000.0, 3000.0, 2000.0], [0.9, 3.1, 2.0])])
    assert r["pearson"] > 0.95 and r["pearson_ci"][0] > 0.5 and r["n"] == 6 and r["n_arms"] == 2
    anti = across_arms([([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]), ([1000.0, 3000.0, 2000.0], [3.0, 1.0, 2.0])])
    assert anti["pearson"] < -0.95
    assert "why_no_r" in across_arms([([1.0, 2.0], [2.0, 1.0])])
