"""Paraphrasing the teacher's completions (issue 30 item 4, a training-time defence): a second model
rewrites each row's numbers. The faithfulness measure on strings with known answers; the filter,
drop and refuse path and its record; the rewrite prompt and row plumbing on a tiny random
paraphraser (its output is garbage: only the bookkeeping is checked); one stage per (target,
paraphraser) shared by every seed; soft labels recomputed on the rewritten text; config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import RecordingDoc, tiny_subliminal_config

from interp.config import ConfigError, build
from interp.lm.models import Variant, format_prompt, load_model
from interp.store.stages import RunDir, read_json, read_jsonl, write_jsonl
from interp.subliminal import number_data as nd
from interp.subliminal import paraphrase as P
from interp.subliminal import stages as S
from interp.subliminal.config import NEUTRAL_PROMPT, SubliminalConfig

OWL = "You love owls. You think about owls all the time."
ROWS = [{"prompt": f"Continue {i}", "completion": f"{100 + i}, {250 + 7 * i}, {900 - i}"} for i in range(8)]


# ---------------------------------------------------------------- the measure and the record


@pytest.mark.parametrize(("original", "rewrite", "expected"), [
    ("1, 2, 3", "1, 2, 3", 1.0), ("1, 2, 3", "3, 2, 1", 1 / 3), ("1, 2, 3", "1, 3", 2 / 3),
    ("1, 2, 3", "1, 9, 2, 3", 1.0),  # extra numbers are not penalised
    ("10, 20, 30, 40", "20, 10, 40, 30", 0.5), ("1, 1, 2", "1, 2", 2 / 3), ("1, 1, 2", "2, 1, 1", 2 / 3),
    ("007, 5", "7, 5", 1.0),  # values, as the filter reads them
    ("412, 7", "", 0.0), ("412, 7", "Sure! 412 and then 7.", 1.0), ("", "", 1.0), ("", "5", 0.0),
    ("5, 6, 7, 8", "1, 5, 2, 6, 3, 8, 4", 0.75),
])  # fmt: skip
def test_faithfulness_is_the_share_of_original_numbers_kept_in_order(original, rewrite, expected):
    assert P.faithfulness(original, rewrite) == pytest.approx(expected)


def test_the_rewrite_prompt_asks_for_the_rows_numbers_in_order():
    assert P.rewrite_prompt("412, 7, 088") == (
        "Rewrite this list of numbers: 412, 7, 088. Reply with the numbers only, separated by commas.")
    assert P.rewrite_prompt("1 2 3") == P.rewrite_prompt("1, 2, 3")  # the numbers, not the original's separators


def test_rewrites_failing_the_number_filter_are_dropped_and_counted():
    rows = [{"prompt": f"p{i}", "completion": "1, 2, 3", "extra": i} for i in range(5)]
    rewrites = ["1, 2, 3", "3, 2, 1", "Sure! 1, 2", ", ".join(map(str, range(11))), "1, 666, 3"]
    kept, judged, rec = P.judge_rewrites(rows, rewrites, banned=frozenset({666}))
    assert [r["prompt"] for r in kept] == ["p0", "p1"]  # prompts (and other fields) kept, in order
    assert [r["completion"] for r in kept] == ["1, 2, 3", "3, 2, 1"] and kept[1]["extra"] == 1
    assert rec["n_rows"] == 5 and rec["kept"] == 2 and rec["dropped"] == 3
    assert rec["rejected"] == {"banned_number": 1, "non_digit_item": 1, "too_many_numbers": 1}
    assert rec["faithfulness"] == pytest.approx((1 + 1 / 3) / 2)  # over the kept rows
    assert rec["faithfulness_all"] == pytest.approx((1 + 1 / 3 + 2 / 3 + 1 + 2 / 3) / 5)
    assert rec["same_numbers"] == 0.5 and rec["same_text"] == 0.5
    assert [j["reason"] for j in judged] == [None, None, "non_digit_item", "too_many_numbers", "banned_number"]
    assert [e["kept"] for e in rec["examples"]] == [True, True, False, False] and len(rec["examples"]) == P.N_EXAMPLES
    assert rec["examples"][2] == {"original": "1, 2, 3", "rewrite": "Sure! 1, 2", "faithfulness": 2 / 3, "kept": False}


# ---------------------------------------------------------------- config


def _cfg(*students: dict, **over) -> SubliminalConfig:  # noqa: ANN003
    raw = copy.deepcopy(tiny_subliminal_config(**over) | {"name": "tiny"})
    raw["students"] = list(students)
    raw["teacher"] |= {"control": "neutral"}
    return build(SubliminalConfig, raw)


@pytest.mark.parametrize(("student", "over", "message"), [
    ({"paraphrase": "no-such-model"}, {}, "students: 'a' paraphrase: unknown model 'no-such-model'"),
    ({"paraphrase": ""}, {}, "students: 'a' paraphrase is empty"),
    ({"paraphrase": "base", "mix_control": 0.5}, {}, "'a' paraphrase = 'base' rewrites the rows; it does not combine with mix_control = 0.5"),
    ({"paraphrase": "base", "subset": "scan-top"}, {}, "does not combine with subset = 'scan-top'"),
    ({"paraphrase": "base", "shuffle": "within"}, {}, "does not combine with shuffle = 'within'"),
    ({"paraphrase": "base", "mask": "random"}, {}, "does not combine with mask = 'random'"),
    ({"paraphrase": "base"}, {"data__kind": "code", "data__constraint": "none"},
     "'a' paraphrase rewrites number lists; data.kind = 'code' is not one"),
])  # fmt: skip
def test_bad_settings_are_one_line_naming_the_student(student, over, message):
    with pytest.raises(ConfigError) as e:
        _cfg({"name": "a", **student}, **over)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_good_settings_build_and_name_the_paraphraser_among_trusted_models():
    cfg = _cfg({"name": "a", "paraphrase": "base"}, {"name": "b", "paraphrase": "tiny-gemma", "objective": "sft"},
               {"name": "c", "paraphrase": "tiny-gemma", "data": "control"}, model={"trust_remote_code": True})  # fmt: skip
    assert [s.paraphrase for s in cfg.students] == ["base", "tiny-gemma", "tiny-gemma"]
    assert cfg.trusted_specs() == ["tiny-llama", "tiny-gemma"]  # the teacher's, then the paraphraser
    assert P.paraphraser(cfg, "base") == Variant("tiny-llama") and P.paraphraser(cfg, "tiny-gemma") == Variant("tiny-gemma")


# ---------------------------------------------------------------- the student's rows


def _stage(run: RunDir, name: str, rows: list[dict]):  # noqa: ANN202
    return run.compute(name, {"rows": rows}, lambda out: write_jsonl(out / "dataset.jsonl", rows))


@pytest.fixture
def setup(tmp_path, monkeypatch):  # noqa: ANN201
    """(student_rows for a named arm, the dataset stage, the run, the sampler's calls)."""
    run = RunDir(tmp_path, device="cpu", dtype="float32")
    data = _stage(run, "filter/trait/owl", ROWS)
    calls = []
    real = P.sample

    def recording(model, tok, texts, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append({"texts": list(texts), "tok": tok, **kw})
        return real(model, tok, texts, **kw)

    monkeypatch.setattr(P, "sample", recording)

    def rows(name: str, seed: int = 0, **over):  # noqa: ANN003, ANN202
        cfg = _cfg({"name": "plain"}, {"name": "base", "paraphrase": "base"}, {"name": "llama", "paraphrase": "tiny-llama"},
                   {"name": "gemma", "paraphrase": "tiny-gemma"}, {"name": "sft", "paraphrase": "base", "objective": "sft"},
                   **over)  # fmt: skip
        s = next(s for s in cfg.students if s.name == name)
        return S.student_rows(cfg, run, s, "owl", seed, data, Variant("tiny-llama", system=OWL),
                              Variant("tiny-llama", system=NEUTRAL_PROMPT))  # fmt: skip

    return rows, data, run, calls


def test_a_tiny_paraphraser_rewrites_every_row_under_the_list_constraint(setup):
    rows, data, run, calls = setup
    got, extra, inputs = rows("base", data__constraint="list")
    assert extra == {"paraphrase": "base"} and set(inputs) == {"paraphrase"}
    (call,) = calls
    # asked through its own chat template, no system prompt, for each row's numbers in order
    assert call["texts"] == [format_prompt(call["tok"], P.rewrite_prompt(r["completion"])) for r in ROWS]
    assert "processor_factory" in call and call["temperature"] == 1.0
    st = inputs["paraphrase"]
    judged, rec = read_jsonl(st.path / "rewrites.jsonl"), read_json(st.path / "paraphrase.json")
    assert [j["original"] for j in judged] == [r["completion"] for r in ROWS]
    passing = [j for j in judged if nd.parse_numbers(j["rewrite"]).ok]
    assert rec["kept"] == len(passing) == len(got) and rec["n_rows"] == len(ROWS)
    assert [r["completion"] for r in got] == [j["rewrite"] for j in passing]  # the rewrites, not the originals
    assert [r["prompt"] for r in got] == [j["prompt"] for j in passing]  # each row keeps its prompt
    assert rec["faithfulness"] == pytest.approx(sum(P.faithfulness(j["original"], j["rewrite"]) for j in passing)
                                                / len(passing))  # fmt: skip
    assert rec["model"] == "tiny-llama" and rec["constraint"] == "list" and rec["prompt"] == P.PROMPT


def test_one_stage_per_target_and_paraphraser_shared_by_seeds_and_arms(setup):
    rows, data, run, calls = setup
    first = rows("base")
    assert rows("base", seed=1) == first and rows("sft") == first  # same rows and stage: nothing sampled again
    assert rows("llama")[1:] == ({"paraphrase": "tiny-llama"}, first[2])  # "base" is the teacher's base: one stage
    assert len(calls) == 1
    gemma = rows("gemma")
    assert len(calls) == 2 and gemma[2]["paraphrase"].key != first[2]["paraphrase"].key
    assert gemma[2]["paraphrase"].path.name.startswith("paraphrase__owl__tiny-gemma-")
    plain, extra, inputs = rows("plain")
    assert plain == ROWS and extra is None and inputs == {}  # off: rows and key as before
    cfg = _cfg({"name": "x"})
    settings = cfg.students[0].settings(cfg.train)

    def key(r):  # noqa: ANN001, ANN202
        return S.finetune_job(run, "student/x", "tiny-llama", r[0], settings, seed=0, device="cpu", dtype="float32",
                              inputs={"data": data, **r[2]}, extra=r[1]).stage.key  # fmt: skip

    assert len({key(first), key(gemma), key(rows("plain"))}) == 3  # each paraphraser its own student key


def test_garbage_rewrites_are_dropped_and_fewer_than_half_refused(setup):
    rows, data, run, calls = setup
    try:  # free sampling from a random model: whatever it writes, the record must add up
        got = rows("base", data__constraint="none")[0]
        refused = None
    except ConfigError as e:
        got, refused = None, str(e)
    st = P.paraphrase_stage(_cfg({"name": "x"}, data__constraint="none"), run, "owl", data, "base")  # cached: nothing sampled again
    assert len(calls) == 1
    judged, rec = read_jsonl(st.path / "rewrites.jsonl"), read_json(st.path / "paraphrase.json")
    reasons = [nd.parse_numbers(j["rewrite"]).reason for j in judged]
    assert rec["kept"] == reasons.count(None) and rec["dropped"] == len(ROWS) - rec["kept"]
    assert sum(rec["rejected"].values()) == rec["dropped"]
    assert (refused is not None) == (2 * rec["kept"] < len(ROWS))
    if refused:
        assert f"only {rec['kept']} of {len(ROWS)} rewrites" in refused and "\n" not in refused
    else:
        assert len(got) == rec["kept"]


@pytest.mark.parametrize(("n_pass", "refused"), [(3, True), (4, False), (8, False), (0, True)])
def test_the_refusal_is_at_fewer_than_half(setup, monkeypatch, n_pass, refused):
    rows = setup[0]
    fake = lambda model, tok, texts, **kw: ["5, 6"] * n_pass + ["no numbers here"] * (len(texts) - n_pass)  # noqa: E731
    monkeypatch.setattr(P, "sample", fake)
    if not refused:
        assert len(rows("base")[0]) == n_pass
        return
    with pytest.raises(ConfigError) as e:
        rows("base")
    msg = str(e.value)
    assert msg.startswith("students: 'base' paraphrase (owl's data): only") and "\n" not in msg
    assert f"only {n_pass} of {len(ROWS)} rewrites by 'tiny-llama'" in msg and "fewer than half" in msg


# ---------------------------------------------------------------- soft labels


def test_soft_labels_are_the_teachers_on_the_rewritten_text(setup, monkeypatch):
    # the defence changes the text, not who labels it: the trait teacher's labels on the rewrite
    from interp.lm.finetune import tokenize_examples
    from interp.lm.loss import Objective
    from interp.lm.settings import FinetuneConfig
    from interp.subliminal.jobs import _examples, _soft_teacher

    rows = setup[0]
    reverse = lambda c: ", ".join(reversed(c.split(", ")))  # noqa: E731
    monkeypatch.setattr(P, "sample", lambda model, tok, texts, **kw: [reverse(r["completion"]) for r in ROWS])
    got = rows("base")[0]
    teacher = Variant("tiny-llama", system=OWL)
    _, tok = load_model("tiny-llama", "cpu", "float32")
    tok.padding_side = "right"
    soft = _soft_teacher("tiny-llama", teacher, "cpu", "float32", {})
    obj = Objective.build(tok, FinetuneConfig(objective="distill"), soft, torch.device("cpu"))

    def labels(rs):  # noqa: ANN001, ANN202
        return [r["labels"] for r in obj.label(tokenize_examples(tok, _examples(tok, rs, teacher, soft), tok.eos_token, 96, soft))]

    on_rewrite = labels([{**r, "completion": reverse(r["completion"])} for r in ROWS])
    on_original = labels(ROWS)
    for g, w, o in zip(labels(got), on_rewrite, on_original):
        assert torch.equal(g, w)
        assert g.shape == o.shape and not torch.allclose(g, o)  # the same length, other labels


# ---------------------------------------------------------------- the report


def test_the_report_table_shows_rows_kept_faithfulness_and_examples():
    from interp.analysis.data_controls import render_paraphrases, variant_of
    from interp.fmt import fmt

    _, _, rec = P.judge_rewrites([{"prompt": "p", "completion": "1, 2, 3"}] * 3, ["1, 2, 3", "3, 2, 1", "x"])

    doc = RecordingDoc()
    render_paraphrases(doc, {"gemma3-270m": {"owl": rec}}, n_examples=3)
    summary, examples = doc.tables
    assert summary[1] == ["gemma3-270m", "owl", "2 of 3", fmt(2 / 3), fmt(0.5), "non_digit_item 1"]
    assert [r[3] for r in examples[1:]] == ["1, 2, 3", "3, 2, 1", "x (dropped)"]
    assert "removes only what the teacher's own token choices carry" in doc.paras[0]
    assert variant_of(_cfg({"name": "a", "paraphrase": "base"}).students[0]) == "paraphrase base"


@pytest.mark.parametrize(("faithful", "warned"), [(0.1, True), (0.95, False)])
def test_an_unfaithful_rewrite_is_flagged_in_the_log(tmp_path, caplog, faithful, warned):
    import json
    import logging
    from types import SimpleNamespace

    from interp.subliminal.paraphrase import paraphrased_rows

    rec = {"kept": 2, "n_rows": 2, "rejected": {}, "model": "gemma3-270m", "faithfulness": faithful}
    (tmp_path / "paraphrase.json").write_text(json.dumps(rec))
    (tmp_path / "dataset.jsonl").write_text('{"prompt": "p", "completion": "1, 2"}\n{"prompt": "q", "completion": "3"}\n')
    with caplog.at_level(logging.WARNING, logger="interp"):
        rows = paraphrased_rows(SimpleNamespace(path=tmp_path), "students: 'para' (owl)")
    assert [r["completion"] for r in rows] == ["1, 2", "3"]
    assert ("a rewrite, not a paraphrase" in caplog.text) == warned and ("'para'" in caplog.text) == warned
