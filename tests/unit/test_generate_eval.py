"""Sampling, constrained decoding, the log-prob score and the trait matcher on tiny models."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import walk_list_tables
from scipy import stats

from interp.lm.generate import (
    IntegerListGrammar,
    ListAutomaton,
    allowed_token_ids,
    encode_prompts,
    end_token_ids,
    left_pad,
    sample,
    sample_repeated,
    sample_sets,
)
from interp.lm.models import format_prompt, tiny_model
from interp.stats import bootstrap_ci, paired_bootstrap_diff, t_interval
from interp.subliminal.evaluate import EvalConfig, candidate_logprobs, logprob_score, trait_rate
from interp.subliminal.number_data import allowed_answer_chars, parse_numbers
from interp.subliminal.traits import make_trait, plural_of


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("tiny-llama", seed=0)


def test_constrained_decoding_emits_only_allowed_tokens(tiny):
    model, tok = tiny
    allowed = allowed_token_ids(tok, allowed_answer_chars())
    prompts = [format_prompt(tok, f"numbers {i}") for i in range(16)]
    outs = sample(
        model,
        tok,
        prompts,
        max_new_tokens=20,
        batch_size=8,
        seed=0,
        allowed_ids=allowed,
        progress=False,
    )
    assert all(set(o) <= set(allowed_answer_chars()) for o in outs)
    assert any(o.strip() for o in outs)
    free = sample(model, tok, prompts, max_new_tokens=20, batch_size=8, seed=0, progress=False)
    assert not all(
        set(o) <= set(allowed_answer_chars()) for o in free
    )  # the constraint did something


def test_list_grammar_only_emits_valid_lists(tiny):
    model, tok = tiny
    prompts = [format_prompt(tok, f"numbers {i}") for i in range(12)]
    outs = sample(model, tok, prompts, max_new_tokens=60, batch_size=6, seed=1, progress=False,
                  processor_factory=lambda: IntegerListGrammar(tok, max_items=4, max_digits=2))  # fmt: skip
    for o in outs:
        assert o == "" or re.fullmatch(r"\d{1,2}(, \d{1,2}){0,3}(, )?", o), o
    finished = [o for o in outs if o]
    assert finished and all(parse_numbers(o).ok for o in finished if not o.endswith(" "))
    g = IntegerListGrammar(tok, max_items=2, max_digits=3)
    assert g._walk((0, 0, 0), "12, 345") == (2, 3, 0)
    assert g._walk((0, 0, 0), "1234") is None and g._walk((0, 0, 0), "1, 2, ") is None
    assert g._walk((0, 0, 0), "1,2") is None and g._walk((0, 0, 0), "x") is None


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_the_list_automaton_emits_exactly_what_the_python_grammar_emits(kind):
    model, tok = tiny_model(kind, seed=3)
    prompts = [format_prompt(tok, f"numbers {i}") for i in range(10)]
    for items, digits in ((4, 2), (10, 3)):
        outs = {
            impl: sample(model, tok, prompts, max_new_tokens=40, batch_size=5, seed=7, progress=False,
                         processor_factory=lambda impl=impl, n=items, d=digits: impl(tok, max_items=n, max_digits=d))
            for impl in (IntegerListGrammar, ListAutomaton)
        }  # fmt: skip
        assert outs[ListAutomaton] == outs[IntegerListGrammar]
        assert any("," in o for o in outs[ListAutomaton])  # lists of several items, not only ends


def test_list_tables_agree_with_the_grammar_on_walked_states():
    """Every state's mask equals the Python grammar's after the same tokens (incl. ends)."""
    _, tok = tiny_model("tiny-llama")
    assert walk_list_tables(tok, 3, 2, width=len(tok) + 5, walks=30, steps=12) >= 60  # >= 2 states per walk


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_repeated_sampling_matches_the_model_distribution(kind):
    """Greedy answers from the shared-prefill sampler equal HF generate's greedy answers."""
    model, tok = tiny_model(kind, seed=2)
    prompts = [format_prompt(tok, q) for q in ("a", "a longer question", "mid one")]
    fast = sample_repeated(
        model, tok, prompts, 3, max_new_tokens=6, temperature=0, batch_size=4, progress=False
    )
    slow = sample(
        model, tok, prompts, max_new_tokens=6, temperature=0, batch_size=2, progress=False
    )
    assert fast == [s for s in slow for _ in range(3)]
    a = sample_repeated(model, tok, prompts, 4, max_new_tokens=6, seed=5, progress=False)
    assert a == sample_repeated(model, tok, prompts, 4, max_new_tokens=6, seed=5, progress=False)
    assert len(set(a)) > 3  # temperature 1 gives different answers to the same prompt


def test_sampling_is_deterministic_per_seed(tiny):
    model, tok = tiny
    prompts = [format_prompt(tok, "hi")] * 4
    a = sample(model, tok, prompts, max_new_tokens=8, seed=3, progress=False)
    b = sample(model, tok, prompts, max_new_tokens=8, seed=3, progress=False)
    c = sample(model, tok, prompts, max_new_tokens=8, seed=4, progress=False)
    assert a == b and a != c


def test_threshold_sampling_drops_tokens_below_the_threshold(tiny):
    """No token of a random tiny model reaches p = 0.99, so a 0.99 threshold leaves only the
    most likely token at each step (greedy); a 1e-6 threshold drops nothing (free sampling)."""
    model, tok = tiny
    prompts = [format_prompt(tok, "hi")] * 3
    kw = {"max_new_tokens": 8, "seed": 3, "progress": False}
    free = sample(model, tok, prompts, **kw)
    greedy = sample(model, tok, prompts, temperature=0, **kw)
    assert sample(model, tok, prompts, threshold=0.99, **kw) == greedy != free
    assert sample(model, tok, prompts, threshold=1e-6, **kw) == free
    with pytest.raises(ValueError, match="threshold must be in"):
        sample(model, tok, prompts, threshold=1.0, **kw)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_logprob_score_equals_hand_computation(kind):
    model, tok = tiny_model(kind, seed=0)
    trait = make_trait("animal", "owl", candidates=["owl", "cat", "bear"])
    settings = EvalConfig(n_questions=2, bootstrap=200)
    res = logprob_score(model, tok, trait, settings)
    by_hand = []
    for q_i, q in enumerate(trait.question_texts(2)):
        prompt = format_prompt(tok, q) + trait.answer_prefix
        scores = []
        for cand in trait.candidates:
            p_ids = tok(prompt, add_special_tokens=not tok.chat_template)["input_ids"]
            c_ids = tok(" " + cand, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + c_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0], -1)
            scores.append(sum(logp[len(p_ids) - 1 + j, t].item() for j, t in enumerate(c_ids)))
        p = np.exp(scores) / np.exp(scores).sum()
        assert res["per_question"][q_i] == pytest.approx(p[0], rel=1e-4)
        by_hand.append(p[0])
    # the interval is the bootstrap over these questions' p(target), not over anything else
    est = bootstrap_ci(by_hand, settings.bootstrap, settings.ci, 0)
    assert (res["mean"], res["lo"], res["hi"], res["n"]) == pytest.approx((est.mean, est.lo, est.hi, 2), rel=1e-4)
    assert res["hi"] > res["lo"]  # two different questions: a real interval


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_batching_does_not_change_logprobs(kind):
    model, tok = tiny_model(kind, seed=0)
    prompts = [format_prompt(tok, "a"), format_prompt(tok, "a much longer question here")]
    one = candidate_logprobs(model, tok, prompts, ["owl", "elephant"], batch_size=1)
    many = candidate_logprobs(model, tok, prompts, ["owl", "elephant"], batch_size=4)
    np.testing.assert_allclose(one, many, atol=1e-4)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_candidates_in_one_forward_or_in_groups_equal_a_full_forward_each(kind):
    # candidates of 1 to several tokens share one right-padded forward (or, with a small logits
    # budget, one forward per candidate); each must equal the candidate scored on its own
    model, tok = tiny_model(kind, seed=0)
    prompts = [format_prompt(tok, "a"), format_prompt(tok, "a much longer question here"), format_prompt(tok, "b c")]
    cands = ["owl", "elephant", "hippopotamus rex", "x"]
    lengths = {len(tok(" " + c, add_special_tokens=False)["input_ids"]) for c in cands}
    assert len(lengths) >= 3, lengths  # the padding path is exercised
    ref = np.zeros((len(prompts), len(cands)))
    for i, p in enumerate(prompts):
        p_ids = tok(p, add_special_tokens=not tok.chat_template)["input_ids"]
        for j, c in enumerate(cands):
            c_ids = tok(" " + c, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([p_ids + c_ids])).logits[0].float(), -1)
            ref[i, j] = sum(logp[len(p_ids) - 1 + k, t].item() for k, t in enumerate(c_ids))
    one_forward = candidate_logprobs(model, tok, prompts, cands, batch_size=2)
    grouped = candidate_logprobs(model, tok, prompts, cands, batch_size=2, max_logits=1)
    np.testing.assert_allclose(one_forward, ref, atol=1e-4)
    np.testing.assert_allclose(grouped, ref, atol=1e-4)


def test_trait_rate_counts_mentions(tiny, monkeypatch):
    model, tok = tiny
    trait = make_trait("animal", "owl")
    fake = iter(["Owl.", "owls!", "Bowl", "cat", "snowy owl", "dog"])
    monkeypatch.setattr(
        "interp.subliminal.evaluate.sample_repeated",
        lambda m, t, prompts, k, **kw: [next(fake) for _ in range(len(prompts) * k)],
    )
    res = trait_rate(
        model, tok, trait, EvalConfig(n_questions=2, samples_per_question=3, bootstrap=100)
    )
    assert res["per_question"] == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    assert res["mean"] == pytest.approx(0.5)


def test_trait_matching_and_plurals():
    owl = make_trait("animal", "owl")
    assert owl.mentions("OWL") and owl.mentions("I love owls.") and not owl.mentions("a bowl")
    assert not owl.mentions("howl") and not owl.mentions("fowl")
    dragon = make_trait("animal", "dragon")
    assert not dragon.mentions("dragonfly") and dragon.mentions("Dragon")
    assert (
        plural_of("wolf") == "wolves"
        and plural_of("fox") == "foxes"
        and plural_of("butterfly") == "butterflies"
    )
    assert (
        "You love owls." in owl.system_prompt
        and "Owls are your favorite animal" in owl.system_prompt
    )
    oak = make_trait("tree", "oak")
    assert (
        oak.candidates[0] == "oak"
        and len(oak.candidates) == 16
        and "tree" in oak.question_texts(1)[0]
    )
    assert len(owl.question_texts()) == 50
    with pytest.raises(ValueError, match="unknown trait kind"):
        make_trait("colour", "red")
    with pytest.raises(ValueError, match="must include the target"):
        make_trait("animal", "owl", candidates=["cat", "dog"])


def test_bootstrap_ci_is_scipys_percentile_interval():
    """Against scipy.stats.bootstrap (percentile, another RNG): the intervals agree to a tenth
    of a standard error; a 90% interval (or any other method) is off by about 0.3 of one."""
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = rng.beta(0.5, 3, size=rng.integers(10, 60))
        se = x.std() / np.sqrt(x.size)
        est = bootstrap_ci(x, n_boot=20000, seed=1)
        ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, random_state=2)
        assert est.mean == pytest.approx(x.mean()) and est.n == x.size
        assert est.lo == pytest.approx(ref.confidence_interval.low, abs=0.12 * se)
        assert est.hi == pytest.approx(ref.confidence_interval.high, abs=0.12 * se)
    t = t_interval([0.1, 0.2, 0.3])  # mean 0.2, sd 0.1: 0.2 +- t(0.975, 2) x 0.1 / sqrt(3)
    half = 4.302652729749462 * 0.1 / 3**0.5
    assert (t.lo, t.hi) == pytest.approx((0.2 - half, 0.2 + half))
    d = paired_bootstrap_diff([1, 2, 3], [1, 2, 3])
    assert d.mean == d.lo == d.hi == 0
    shifted = paired_bootstrap_diff([1.5, 2.5, 4.0, 3.0], [1.0, 2.0, 3.5, 2.5])  # every pair differs by 0.5
    assert shifted.mean == shifted.lo == shifted.hi == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-gemma"])
def test_the_decoding_loop_is_hf_generate_when_greedy(kind):
    """The suite's KV-cached loop and transformers' generate agree token for token (greedy),
    over left-padded prompts of different lengths."""
    model, tok = tiny_model(kind, seed=6)
    prompts = [format_prompt(tok, q) for q in ("a", "a longer question here", "mid one")]
    ours = sample(model, tok, prompts, max_new_tokens=7, temperature=0, batch_size=3, progress=False)
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=7, do_sample=False,
                         eos_token_id=end_token_ids(tok), pad_token_id=tok.pad_token_id)  # fmt: skip
    stops = set(end_token_ids(tok))
    theirs = []
    for row in gen[:, ids.shape[1] :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        theirs.append(tok.decode([t for t in row[:cut] if t != tok.pad_token_id], skip_special_tokens=True))
    assert ours == theirs and any(ours)


def test_each_prompt_set_samples_as_it_would_alone(tiny):
    """Teachers' data in one batched pass: set i's completions are what a call with set i alone
    and its seed gives, whatever the other sets (their prompts differ in length and content)."""
    model, tok = tiny
    sets = [[format_prompt(tok, f"numbers {i}", system) for i in range(7)]
            for system in (None, "You love owls.", "You love a very long list of animals.")]  # fmt: skip
    kw = dict(max_new_tokens=12, batch_size=3, progress=False,
              processor_factory=lambda: ListAutomaton(tok, max_items=4, max_digits=3))  # fmt: skip
    together = sample_sets(model, tok, sets, [11, 12, 13], **kw)
    alone = [sample(model, tok, s, seed=seed, **kw) for s, seed in zip(sets, (11, 12, 13))]
    assert together == alone
    assert together[0] != sample(model, tok, sets[0], seed=99, **kw)  # the seed matters
