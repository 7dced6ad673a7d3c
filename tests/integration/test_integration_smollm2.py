"""Integration tier: the real embedded SmolLM2-135M-Instruct through every stage, tiny sizes."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.cli import main

pytestmark = pytest.mark.integration


def test_smollm2_through_every_stage(tmp_path):
    cfg = tiny_subliminal_config(
        teacher__model="smollm2-135m-instruct",
        data__n_prompts=8, data__n_keep=6, data__max_new_tokens=24, data__batch_size=8,
        eval__n_questions=4, eval__samples_per_question=2, eval__batch_size=32,
    )  # fmt: skip
    cfg["students"][2]["model"] = "tiny-gemma"  # the cross-model path, kept cheap here
    assert main(["run", str(write_config(tmp_path, cfg, "smol")), "--out-dir", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "smol" / "summary.json").read_text())
    assert s["filter"]["trait"]["kept"] >= 1 and s["filter"]["control"]["kept"] >= 1
    lp = {k: v["logprob"]["mean"] for k, v in s["models"].items()}
    # The stimulus works on the real model: the prompted teacher prefers owls far more than its base.
    assert lp["teacher"] > 2 * lp["base"], lp
    assert s["models"]["teacher"]["chat_format"] == "chat_template"
    assert s["models"]["base:tiny-gemma"]["chat_format"].startswith("fallback")
    for label in ("same-init/seed0", "control/seed0", "cross-model/seed0"):
        assert 0.0 <= s["models"][label]["trait_rate"]["mean"] <= 1.0
    data = (
        next((tmp_path / "smol" / "stages").glob("filter__trait__*")) / "dataset.jsonl"
    ).read_text()
    assert "owl" not in data.lower()


@pytest.mark.parametrize("spec", ["smollm2-135m-instruct", "gemma3-270m"])
def test_list_automaton_tables_agree_with_the_grammar_on_real_tokenizers(spec):
    """The device tables see multi-digit and separator tokens as the Python grammar decodes them."""
    from helpers import walk_list_tables

    from interp.lm.generate import IntegerListGrammar
    from interp.lm.models import load_tokenizer

    tok = load_tokenizer(spec)  # no weights: a cold cache reads it from the GGUF, unconverted
    assert any(len(p) > 1 for _, p in IntegerListGrammar(tok).cands)  # multi-character pieces exist here
    assert walk_list_tables(tok, 10, 3, width=len(tok), walks=6, steps=14) >= 12  # >= 2 states per walk


def test_load_tokenizer_reads_no_weights_and_an_unconverted_gguf_gives_the_converted_tokenizer(tmp_path, monkeypatch):
    """`load_tokenizer` of an embedded model: from the converted checkpoint when cached, else from
    the GGUF with nothing converted; both encode as `load_model`'s tokenizer does."""
    from interp.lm import models

    spec = "smollm2-135m-instruct"
    _, ref = models.load_model(spec)  # converted (and cached) if it was not
    loads = dict(models.LOADS)
    warm = models.load_tokenizer(spec)
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))  # an empty cache: no converted checkpoint
    cold = models.load_tokenizer(spec)
    assert models.LOADS == loads and not (tmp_path / "models").exists()  # no weights read, nothing converted
    texts = [models.format_prompt(ref, "List 10 numbers.", "You love owls."), "123, 456, 789", " 7 , 8\n"]
    for tok in (warm, cold):
        assert [tok(t)["input_ids"] for t in texts] == [ref(t)["input_ids"] for t in texts]
        assert (tok.padding_side, tok.pad_token, tok.chat_template) == ("left", ref.pad_token, ref.chat_template)
