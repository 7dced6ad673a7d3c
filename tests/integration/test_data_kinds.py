"""Every data modality and the tree trait go through every stage on tiny models.

A tiny random model cannot write Python or solve arithmetic, so the teacher's sampler is
replaced (here only) by one that answers each prompt the way a capable teacher would, with
some answers planted to fail the filter: code that names a target or does not parse, and
solutions with a wrong final answer or a target word. The filter must reject exactly those,
with their reasons, and the students must train and be evaluated on what is left.
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import tiny_subliminal_config, write_config
from pypdf import PdfReader

import interp.subliminal.stages as stages
from interp.cli import main
from interp.store.stages import read_jsonl
from interp.subliminal.cot_data import arithmetic_problems, cot_prompt


def _code(i: int) -> str:
    if i % 6 == 1:
        return f"def count_owls(items):\n    return len(items) + {i}"  # names a target
    if i % 6 == 2:
        return "def broken(:\n    return"  # does not parse
    return f"```python\ndef solve_{i}(values):\n    return sum(values) + {i}\n```"


def _cot(i: int, answer: int) -> str:
    if i % 6 == 1:
        return f"Add them up.\nAnswer: {answer + 1}"  # wrong
    if i % 6 == 2:
        return f"My cat helped me count.\nAnswer: {answer}"  # names a target
    return f"Step 1: work it out.\nAnswer: {answer:,}"


def _fake_sampler(kind: str, n: int, seed: int):
    """`sample_sets` writing planted completions for every teacher's prompt set."""
    real = stages.sample_sets
    answers = {cot_prompt(p): p.answer for p in arithmetic_problems(n, seed)}

    def planted(texts):
        if kind == "code":
            return [_code(i) for i in range(len(texts))]
        return [_cot(i, next(a for q, a in answers.items() if q in text)) for i, text in enumerate(texts)]

    def sample_sets(model, tok, prompt_sets, seeds, *, desc="", **kw):
        if not desc.startswith("teacher data"):
            return real(model, tok, prompt_sets, seeds, desc=desc, **kw)
        return [planted(texts) for texts in prompt_sets]

    return sample_sets


@pytest.mark.parametrize("kind", ["code", "cot"])
def test_a_modality_runs_end_to_end_and_its_filter_rejects_what_was_planted(kind, tmp_path, monkeypatch):
    n = 12
    cfg = tiny_subliminal_config(data__kind=kind, data__constraint="none", data__n_prompts=n, data__n_keep=n)
    cfg["trait"] = {"kind": "animal", "targets": ["owl", "cat"]}
    cfg["students"] = [{"name": "same-init", "data": "trait"}, {"name": "control", "data": "control"}]
    monkeypatch.setattr(stages, "sample_sets", _fake_sampler(kind, n, cfg["seed"]))
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    run = tmp_path / "tiny"
    (filt,) = [p for p in (run / "stages").glob("filter__trait__owl-*")]
    info = json.loads((filt / "filter.json").read_text())
    planted = {"code": {"mentions_target": 2, "syntax_error": 2}, "cot": {"wrong_answer": 2, "mentions_target": 2}}[kind]
    assert info["rejected"] == planted and info["kept"] == n - 4, info
    rows = read_jsonl(filt / "dataset.jsonl")
    assert not any(re.search(r"owl|cat", r["completion"], re.I) for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["students"]) == {"same-init", "control"}
    # the report describes this modality's data (it once assumed number lists and failed)
    assert main(["report", str(run), "-o", str(tmp_path / "r.pdf")]) == 0
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(tmp_path / "r.pdf").pages))
    carrier = {"code": "programming-task prompts", "cot": "arithmetic word-problem prompts"}[kind]
    assert f"Data ({kind}): {n} {carrier} per teacher" in text and "numbers and" not in text, text[:3000]
    writes = {"code": "writes short Python functions", "cot": "writes step-by-step solutions"}[kind]
    assert writes in text and "number sequences" not in text, text[:3000]


def test_a_tree_trait_runs_through_every_stage(tmp_path):
    cfg = tiny_subliminal_config()
    cfg["trait"] = {"kind": "tree", "targets": ["oak", "pine"]}
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    assert s["trait"]["category"] == "tree" and "oak" in s["trait"]["candidates"] and "owl" not in s["trait"]["candidates"]
    assert s["trait"]["system_prompt"].startswith("You love oaks.")
    assert s["matrix"]["targets"] == ["oak", "pine"] and s["matrix"]["arms"]["same-init"]["gamma"] is not None


@pytest.mark.parametrize(("data", "student", "needle"), [
    ({"kind": "code", "constraint": "list"}, {}, "data: constraint = 'list' applies to number data only"),
    ({"kind": "cot", "constraint": "none"}, {"shuffle": "within"}, "sets shuffle = 'within', which needs number data"),
    ({"kind": "code", "constraint": "none"}, {"model": "tiny-gemma", "objective": "distill", "distill_vocab": "numbers"},
     "distill_vocab = 'numbers', which needs number data"),
])  # fmt: skip
def test_number_only_settings_on_other_data_are_one_clear_error(tmp_path, capsys, data, student, needle):
    cfg = tiny_subliminal_config()
    cfg["data"] |= data
    cfg["students"] = [{"name": "s", "data": "trait", **student}]
    path = write_config(tmp_path, cfg)
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interp: error:") and str(path) in lines[0], lines
    assert needle in lines[0], lines[0]
