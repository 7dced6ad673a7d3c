"""A chat template's own system prompt, kept or left out (issue 29, the evaluation prompt).

SmolLM2's template inserts "You are a helpful AI assistant named SmolLM, trained by Hugging
Face" whenever no system message is given; Nief et al. saw one student score 3.1% with it and
48.2% without. `default_system_prompt = false` (per student in [train] / [[students]], for
scoring in [eval]) renders the prompt with no system turn at all.
"""

from __future__ import annotations

import dataclasses

import pytest

from interp.lm.models import format_chat, format_prompt, has_default_system
from interp.lm.shape import tiny_tokenizer

DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _smol_like():
    """The tiny tokenizer with SmolLM2's rule: a default system turn when none comes first."""
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "<system>" + DEFAULT + "<eos>\n{% endif %}<{{ m['role'] }}>{{ m['content'] }}<eos>\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return tok


def test_the_default_system_prompt_is_kept_by_default_and_left_out_on_request():
    tok = _smol_like()
    kept = format_prompt(tok, "Name an animal.")
    cut = format_prompt(tok, "Name an animal.", default_system=False)
    assert kept == f"<system>{DEFAULT}<eos>\n<user>Name an animal.<eos>\n<assistant>"
    assert cut == "<user>Name an animal.<eos>\n<assistant>"
    # a system prompt of the run's own (a teacher's) is never touched
    own = format_prompt(tok, "Name an animal.", "You love owls.", default_system=False)
    assert own == format_prompt(tok, "Name an animal.", "You love owls.") == \
        "<system>You love owls.<eos>\n<user>Name an animal.<eos>\n<assistant>"
    # earlier turns, and the turns alone (a KV-cache prefix)
    turns = [("2, 3", "4, 5")]
    assert format_chat(tok, turns, None, default_system=False) == "<user>2, 3<eos>\n<assistant>4, 5<eos>\n"
    assert format_chat(tok, turns, "6, 7", default_system=False).startswith("<user>2, 3<eos>")
    assert format_chat(tok, [], None, default_system=False) == ""
    assert has_default_system(tok)


def test_templates_without_a_default_and_the_fallback_format_are_unchanged():
    plain = tiny_tokenizer()  # a template that adds nothing of its own
    assert format_prompt(plain, "q", default_system=False) == format_prompt(plain, "q") == "<user>q<eos>\n<assistant>"
    assert not has_default_system(plain)
    base = tiny_tokenizer(chat_template=False)  # a base model (Gemma-3-270M here): no template, no default
    assert format_prompt(base, "q", default_system=False) == format_prompt(base, "q")
    assert not has_default_system(base)


def test_a_template_that_puts_no_system_turn_first_is_one_clear_error():
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'system' %}<{{ m['role'] }}>{{ m['content'] }}<eos>\n{% endif %}"
        "{% endfor %}{% for m in messages %}{% if m['role'] == 'system' %}<sys>{{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    with pytest.raises(ValueError, match="does not put the system turn first.*default_system_prompt = true"):
        format_prompt(tok, "q", default_system=False)


def test_the_setting_enters_keys_only_when_it_leaves_the_prompt_out():
    from interp.lm.settings import FinetuneConfig, settings_key
    from interp.subliminal.evaluate import EvalConfig

    assert "default_system_prompt" not in EvalConfig().key()  # keys from before the setting stay valid
    assert EvalConfig(default_system_prompt=False).key()["default_system_prompt"] is False
    assert "default_system_prompt" not in settings_key(FinetuneConfig())
    assert settings_key(FinetuneConfig(default_system_prompt=False))["default_system_prompt"] is False


def test_a_student_can_train_without_it_and_the_run_can_score_without_it(tmp_path):
    from helpers import tiny_subliminal_config, write_config

    from interp.registry import load_experiment
    from interp.subliminal.jobs import _examples

    cfg = tiny_subliminal_config()
    cfg["students"] = [{"name": "plain", "model": "teacher", "data": "trait", "default_system_prompt": False},
                       {"name": "usual", "model": "teacher", "data": "trait"}]  # fmt: skip
    cfg["eval"]["default_system_prompt"] = False
    _, c = load_experiment(write_config(tmp_path, cfg))
    plain, usual = (s.settings(c.train) for s in c.students)
    assert plain.default_system_prompt is False and usual.default_system_prompt is True
    assert c.eval.default_system_prompt is False
    tok = _smol_like()
    rows = [{"prompt": "Continue: 1, 2", "completion": "3, 4"}]
    (ex_plain,), (ex_usual,) = _examples(tok, rows, None, None, False), _examples(tok, rows, None, None, True)
    assert ex_plain.prompt == "<user>Continue: 1, 2<eos>\n<assistant>"
    assert ex_usual.prompt.startswith(f"<system>{DEFAULT}")
    assert dataclasses.replace(plain, default_system_prompt=True) == usual  # the one setting they differ in


def test_scoring_without_it_changes_the_scored_prompts():
    from interp.subliminal.config import TraitConfig
    from interp.subliminal.evaluate import EvalConfig, _scored_prompts

    tok = _smol_like()
    trait = TraitConfig().trait("owl")
    with_it = _scored_prompts(tok, trait, EvalConfig(n_questions=2), None)
    without = _scored_prompts(tok, trait, EvalConfig(n_questions=2, default_system_prompt=False), None)
    assert all(p.startswith("<system>") for p in with_it) and not any("<system>" in p for p in without)
    assert [p.split("<user>", 1)[1] for p in with_it] == [p.split("<user>", 1)[1] for p in without]
