"""Per-example attribution (issue 30): students on the top, bottom or a random fraction of the rows
by the hidden-signal scan. The selection is exact (sizes, ties, seeds, errors), the new fields
leave the half-size subsets' keys alone, and on tiny models the scan's top rows are the rows
planted to carry the teacher, where a random fraction of the same size is not."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from helpers import RecordingDoc, tiny_subliminal_config

from interp.config import ConfigError, build
from interp.subliminal.config import SubliminalConfig
from interp.subliminal.data_controls import half_by_score, rows_by_score, subset_size

SCORES = [0.5, -1.0, 2.0, 0.1, -3.0, 2.0, 0.7, 0.0, -0.2, 1.5]


@pytest.mark.parametrize(("n", "fraction", "k"), [(10, None, 5), (3, None, 1), (1, None, 1), (10, 0.1, 1),
                                                  (30, 0.1, 3), (100, 0.29, 29), (20, 0.25, 5), (7, 0.999, 6)])  # fmt: skip
def test_subset_size_is_the_floor_of_the_fraction_and_half_by_default(n, fraction, k):
    assert subset_size(n, fraction) == k


@pytest.mark.parametrize(("n", "fraction", "message"), [
    (10, 0.0, "subset_fraction = 0.0 must be in (0, 1)"), (10, 1.0, "subset_fraction = 1.0 must be in (0, 1)"),
    (5, 0.1, "subset_fraction = 0.1 keeps no row of 5"), (0, 0.5, "keeps no row of 0"),
])  # fmt: skip
def test_a_fraction_that_keeps_nothing_or_everything_is_one_line_naming_it(n, fraction, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        subset_size(n, fraction)
    assert "\n" not in str(e.value)


def test_top_and_bottom_are_the_exact_ends_of_the_ranking():
    assert rows_by_score(SCORES, "scan-top", seed=0, fraction=0.2) == [2, 5]  # the two 2.0s
    assert rows_by_score(SCORES, "scan-top", seed=0, fraction=0.3) == [2, 5, 9]
    assert rows_by_score(SCORES, "scan-bottom", seed=0, fraction=0.2) == [1, 4]
    assert rows_by_score(SCORES, "scan-bottom", seed=0, fraction=0.4) == [1, 4, 7, 8]
    top, bottom = rows_by_score(SCORES, "scan-top", 0), rows_by_score(SCORES, "scan-bottom", 0)
    assert top == [0, 2, 5, 6, 9] and set(top) | set(bottom) == set(range(10)) and not set(top) & set(bottom)
    # the half-size originals: scan-low is the bottom half, as before
    assert rows_by_score(SCORES, "scan-low", 0) == bottom == half_by_score(SCORES, "scan-low", 0)


def test_ties_are_broken_by_index_at_either_end():
    assert rows_by_score([1.0, 1.0, 1.0, 0.0], "scan-top", 0, fraction=0.5) == [0, 1]
    assert rows_by_score([0.0, 1.0, 1.0, 0.0], "scan-bottom", 0, fraction=0.25) == [0]
    assert rows_by_score([3.0, 3.0, 3.0, 3.0], "scan-bottom", 0, fraction=0.75) == [0, 1, 2]


def test_random_fractions_are_seeded_and_random_at_one_half_is_random_half():
    scores = [0.0] * 40
    a = rows_by_score(scores, "random", seed=3, fraction=0.25)
    assert len(a) == 10 == len(set(a)) and a == sorted(a) and set(a) <= set(range(40))
    assert a == rows_by_score(scores, "random", seed=3, fraction=0.25)
    assert a != rows_by_score(scores, "random", seed=4, fraction=0.25)
    assert a != list(range(10))  # not the first rows
    assert rows_by_score(scores, "random", seed=5) == rows_by_score(scores, "random-half", seed=5)
    assert half_by_score(scores, "random-half", seed=5) == rows_by_score(scores, "random-half", seed=5)


def test_an_unknown_subset_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'scan-top'.*got 'high'"):
        rows_by_score(SCORES, "high", seed=0)


# ---------------------------------------------------------------- config and keys


def _cfg(*students: dict, **data) -> SubliminalConfig:  # noqa: ANN003
    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["students"] = [*students, {"name": "control", "data": "control"}]
    raw["data"] |= data
    return build(SubliminalConfig, raw)


@pytest.mark.parametrize(("student", "data", "message"), [
    ({"subset": "all", "subset_fraction": 0.1}, {}, "subset_fraction = 0.1 needs subset = 'scan-top'"),
    ({"subset": "scan-low", "subset_fraction": 0.1}, {}, "subset = 'scan-low' keeps all rows or one half"),
    ({"subset": "random", "subset_fraction": 1.0}, {}, "subset_fraction"),
    ({"subset": "random", "subset_fraction": 0.0}, {}, "subset_fraction"),
    ({"subset": "scan-top", "subset_fraction": 0.1}, {"n_keep": 8}, "'a' subset_fraction = 0.1 keeps no row of 8"),
])  # fmt: skip
def test_bad_fractions_are_one_line_naming_the_student_and_field(student, data, message):
    with pytest.raises(ConfigError) as e:
        _cfg({"name": "a", **student}, **data)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def _data_stage(run, rows):  # noqa: ANN001, ANN202
    from interp.store.stages import write_jsonl

    return run.compute("filter/trait", {"rows": len(rows)}, lambda out: write_jsonl(out / "dataset.jsonl", rows))


def test_the_fraction_enters_the_student_key_only_off_the_half(tmp_path):
    from interp.store.stages import RunDir
    from interp.subliminal.stages import student_rows

    rows = [{"prompt": f"p{i}", "completion": f"{i}, {i + 1}"} for i in range(8)]
    run = RunDir(tmp_path, device="cpu", dtype="float32")
    data = _data_stage(run, rows)
    cfg = _cfg({"name": "h", "subset": "random-half"}, {"name": "r", "subset": "random"},
               {"name": "r5", "subset": "random", "subset_fraction": 0.5},
               {"name": "r25", "subset": "random", "subset_fraction": 0.25}, {"name": "all"})  # fmt: skip
    got = {s.name: student_rows(cfg, run, s, "owl", 0, data, None, None) for s in cfg.students if s.data == "trait"}  # type: ignore[arg-type]
    assert got["all"][1] is None  # an unmodified student's key gains nothing
    assert got["h"][1] == {"subset": "random-half"}  # as before this change
    assert got["r"][1] == got["r5"][1] == {"subset": "random"} and got["r"][0] == got["r5"][0] == got["h"][0]
    assert got["r25"][1] == {"subset": "random", "subset_fraction": 0.25} and len(got["r25"][0]) == 2
    assert len(got["h"][0]) == 4 and all(r in rows for r in got["r25"][0])


# ---------------------------------------------------------------- planted rows on tiny models


def _planted_data(tmp_path):  # noqa: ANN001, ANN202
    """40 rows, 10 of them (scattered) sampled from a teacher whose output head is 4x its base's
    (its text still looks like the base's random text: '>6c''-' vs 'xIl&&Wp{'), the rest sampled
    from the base; the teacher as a Variant with that delta."""
    from interp.lm.delta import Delta
    from interp.lm.generate import sample
    from interp.lm.models import Variant, format_prompt, load_model

    base, tok = load_model("tiny-llama", "cpu", "float32")
    head = base.get_output_embeddings().weight
    (name,) = [n for n, p in base.named_parameters() if p is head]
    delta_path = tmp_path / "teacher.safetensors"
    Delta(dense_parts={name: (3.0 * head).detach().clone()}).save(delta_path)
    teacher = Variant("tiny-llama", delta_path=delta_path)
    t_model, _ = teacher.load("cpu", "float32")
    planted = sorted(random.Random("planted").sample(range(40), 10))  # not a seed the random subsets use
    users = [f"Continue: {i}, {i + 3}, {i + 6}" for i in range(40)]
    texts = [format_prompt(tok, u) for u in users]
    outs = {who: sample(m, tok, texts, max_new_tokens=8, temperature=1.0, batch_size=40, seed=s, progress=False)
            for who, m, s in (("teacher", t_model, 0), ("base", base, 1))}  # fmt: skip
    rows = [{"prompt": u, "completion": outs["teacher" if i in planted else "base"][i] or "7"} for i, u in enumerate(users)]
    return rows, planted, teacher


def test_top_k_attribution_recovers_planted_rows_and_random_k_does_not(tmp_path):
    from interp.mech.scan import scan_dataset
    from interp.store.stages import RunDir, read_jsonl
    from interp.subliminal.stages import student_rows

    torch.manual_seed(0)
    rows, planted, teacher = _planted_data(tmp_path)
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = scan_dataset(data_file, teacher, device="cpu", dtype="float32", n_boot=10)
    scores = [r["llr_per_token"] for r in read_jsonl(summary["out"])]
    assert len(scores) == 40

    precision = lambda picked: len(set(picked) & set(planted)) / len(picked)  # noqa: E731
    top = rows_by_score(scores, "scan-top", seed=0, fraction=0.25)
    assert len(top) == 10 and precision(top) >= 0.8, (top, planted)
    assert precision(rows_by_score(scores, "scan-bottom", seed=0, fraction=0.25)) <= 0.2
    randoms = [precision(rows_by_score(scores, "random", seed=s, fraction=0.25)) for s in (0, 1, 2)]
    assert max(randoms) < 0.8 and sum(randoms) / 3 <= 0.5, randoms

    # the run's own path: a scan-top student trains on exactly those rows, scored by the scan stage
    run = RunDir(tmp_path / "run", device="cpu", dtype="float32")
    cfg = _cfg({"name": "top", "subset": "scan-top", "subset_fraction": 0.25}, n_keep=40)
    picked, extra, inputs = student_rows(cfg, run, cfg.students[0], "owl", 0, _data_stage(run, rows), teacher, None)  # type: ignore[arg-type]
    assert picked == [rows[i] for i in top] and extra == {"subset": "scan-top", "subset_fraction": 0.25}
    stage_scores = [r["llr_per_token"] for r in read_jsonl(inputs["scan"].path / "scores.jsonl")]
    assert stage_scores == pytest.approx(scores, abs=1e-5)


# ---------------------------------------------------------------- the report's rows


def test_the_report_shows_the_scans_top_and_bottom_rows_cut_short():
    from interp.analysis.data_controls import SHOWN_CHARS, render_scan_ends, scan_ends

    rows = [{"prompt": f"Continue {i}", "completion": f"{i}, " * (5 + 40 * (i == 2))} for i in range(10)]
    ends = scan_ends(rows, SCORES, n=2)
    assert [r["index"] for r in ends["top"]] == [2, 5] and [r["index"] for r in ends["bottom"]] == [4, 1]
    assert ends["top"][0]["llr_per_token"] == 2.0 and ends["bottom"][1]["prompt"] == "Continue 1"
    assert len(ends["top"][0]["completion"]) == SHOWN_CHARS and ends["top"][0]["completion"].endswith("...")
    assert ends["top"][1]["completion"] == "5, 5, 5, 5, 5,"  # short text whole (spaces collapsed)

    doc = RecordingDoc()
    render_scan_ends(doc, {"owl": ends | {"n": 10}})  # type: ignore[arg-type]
    (table,) = doc.tables
    assert [r[:3] for r in table[1:]] == [["owl", "top", "2"], ["owl", "top", "5"], ["owl", "bottom", "4"],
                                          ["owl", "bottom", "1"]]  # fmt: skip
    assert "10 (owl) rows" in doc.paras[0]
