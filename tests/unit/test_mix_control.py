"""Mixing in unbiased data (issue 30 item 4, a training-time defence): a fraction of a student's
trait rows replaced by rows of the control teacher's data. The right number of rows come from
each source, seeded and stable; bad fractions are one line naming them; the control rows carry
the control teacher's prompt, so their soft labels are the control teacher's."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tiny_subliminal_config

from interp.config import ConfigError, build
from interp.lm.models import Variant, tiny_model
from interp.store.stages import RunDir, write_jsonl
from interp.subliminal import stages as S
from interp.subliminal.config import NEUTRAL_PROMPT, SubliminalConfig
from interp.subliminal.data_controls import mix_pairs

OWL = "You love owls. You think about owls all the time."


# ---------------------------------------------------------------- which rows


@pytest.mark.parametrize(("n", "n_control", "fraction", "k"), [(10, 10, 0.5, 5), (30, 4, 0.1, 3), (8, 8, 0.25, 2),
                                                               (7, 7, 0.999, 6), (100, 50, 0.29, 29)])  # fmt: skip
def test_floor_of_the_fraction_replaced_by_distinct_control_rows(n, n_control, fraction, k):
    pairs = mix_pairs(n, n_control, fraction, seed=3)
    trait, control = [i for i, _ in pairs], [j for _, j in pairs]
    assert len(pairs) == k and trait == sorted(set(trait)) and len(set(control)) == k
    assert set(trait) <= set(range(n)) and set(control) <= set(range(n_control))
    assert pairs == mix_pairs(n, n_control, fraction, seed=3)  # seeded: stable
    if k < n:
        assert pairs != mix_pairs(n, n_control, fraction, seed=4)


@pytest.mark.parametrize(("n", "n_control", "fraction", "message"), [
    (10, 10, 0.0, "mix_control = 0.0 must be in (0, 1)"), (10, 10, 1.0, "mix_control = 1.0 must be in (0, 1)"),
    (10, 10, -0.5, "mix_control = -0.5 must be in (0, 1)"), (5, 5, 0.1, "mix_control = 0.1 replaces no row of 5"),
    (10, 3, 0.5, "mix_control = 0.5 replaces 5 of 10 rows; the control data has 3"),
])  # fmt: skip
def test_a_bad_fraction_is_one_line_naming_it(n, n_control, fraction, message):
    with pytest.raises(ValueError) as e:
        mix_pairs(n, n_control, fraction, seed=0)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


# ---------------------------------------------------------------- config


def _cfg(*students: dict, objective: str = "distill", **teacher) -> SubliminalConfig:  # noqa: ANN003
    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["students"] = list(students)
    raw["teacher"] |= {"control": "neutral", **teacher}
    raw["train"]["objective"] = objective
    return build(SubliminalConfig, raw)


@pytest.mark.parametrize(("student", "teacher", "objective", "message"), [
    ({"mix_control": 0.0}, {}, "distill", "mix_control"), ({"mix_control": 1.0}, {}, "distill", "mix_control"),
    ({"mix_control": 1.5}, {}, "distill", "1.5"),
    ({"mix_control": 0.5, "data": "control"}, {}, "distill", "'a' mix_control = 0.5 applies to trait data, not with data = 'control'"),
    ({"mix_control": 0.5, "shuffle": "within"}, {}, "distill", "not with shuffle = 'within'"),
    ({"mix_control": 0.5, "mask": "random"}, {}, "distill", "not with mask = 'random'"),
    ({"mix_control": 0.5}, {"mode": "finetuned"}, "distill", "'a' mix_control = 0.5 with soft labels needs teacher.mode = 'prompt'"),
])  # fmt: skip
def test_bad_settings_are_one_line_naming_the_student_and_field(student, teacher, objective, message):
    with pytest.raises(ConfigError) as e:
        _cfg({"name": "a", **student}, objective=objective, **teacher)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_hard_labels_mix_with_any_teacher_mode():
    assert _cfg({"name": "a", "mix_control": 0.5}, objective="sft", mode="finetuned").students[0].mix_control == 0.5


# ---------------------------------------------------------------- the student's rows


def _stage(run: RunDir, name: str, rows: list[dict]):  # noqa: ANN202
    return run.compute(name, {"rows": rows}, lambda out: write_jsonl(out / "dataset.jsonl", rows))


@pytest.fixture
def mixed(tmp_path, monkeypatch):  # noqa: ANN201
    run = RunDir(tmp_path, device="cpu", dtype="float32")
    trait_rows = [{"prompt": f"p{i}", "completion": f"{i}, {i + 1}"} for i in range(8)]
    control_rows = [{"prompt": f"q{i}", "completion": f"{100 + i}, {200 + i}"} for i in range(6)]
    data, control_data = _stage(run, "filter/trait", trait_rows), _stage(run, "filter/control", control_rows)
    monkeypatch.setattr(S, "control_data", lambda cfg, run_, control: control_data)
    cfg = _cfg({"name": "plain"}, {"name": "m25", "mix_control": 0.25}, {"name": "m50", "mix_control": 0.5})
    teacher, control = Variant("tiny-llama", system=OWL), Variant("tiny-llama", system=NEUTRAL_PROMPT)

    def rows(name: str, seed: int = 0, t: Variant = teacher):  # noqa: ANN202
        s = next(s for s in cfg.students if s.name == name)
        return S.student_rows(cfg, run, s, "owl", seed, data, t, control)

    rows.settings = cfg.students[0].settings(cfg.train)
    return rows, trait_rows, control_rows, control, data, control_data, run


def test_a_mix_replaces_the_fraction_in_place_with_control_rows_and_their_prompt(mixed):
    rows, trait_rows, control_rows, control, data, control_data, run = mixed
    plain, extra, inputs = rows("plain")
    assert plain == trait_rows and extra is None and inputs == {}  # off: rows and key as before
    keys = {S.finetune_job(run, "student/x", "tiny-llama", [], rows.settings, seed=0, device="cpu", dtype="float32",
                           inputs={"data": data}).stage.key}  # fmt: skip
    for name, k in (("m25", 2), ("m50", 4)):
        got, extra, inputs = rows(name)
        assert extra == {"mix_control": k / 8} and inputs == {"control_data": control_data}
        assert len(got) == len(trait_rows)
        mixed_in = [r for r in got if "teacher_system" in r]
        assert len(mixed_in) == k and all(r["teacher_system"] == NEUTRAL_PROMPT for r in mixed_in)
        pool = [(r["prompt"], r["completion"]) for r in control_rows]
        assert len({(r["prompt"], r["completion"]) for r in mixed_in} & set(pool)) == k  # k distinct control rows
        kept = [(i, r) for i, r in enumerate(got) if "teacher_system" not in r]
        assert len(kept) == len(trait_rows) - k and all(trait_rows[i] == r for i, r in kept)  # in place, unchanged
        assert rows(name) == (got, extra, inputs)  # seeded: stable
        assert rows(name, seed=1)[0] != got  # each seed its own mix
        keys.add(S.finetune_job(run, "student/x", "tiny-llama", [], rows.settings, seed=0, device="cpu",
                                dtype="float32", inputs={"data": data, **inputs}, extra=extra).stage.key)  # fmt: skip
    assert len(keys) == 3  # each fraction its own key


def test_soft_labels_of_mixed_rows_need_the_control_on_the_teachers_weights(mixed):
    rows = mixed[0]
    other = Variant("tiny-gemma", system=OWL)  # another model: the control teacher cannot label with its weights
    with pytest.raises(ConfigError) as e:
        rows("m25", t=other)
    assert "'m25' mix_control = 0.25 with soft labels needs the control teacher on the trait teacher's weights" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_control_rows_get_the_control_teachers_soft_labels(mixed):
    # the student's examples give a mixed-in row the control teacher's prompt, so the labels the
    # student trains on there are exactly those the control teacher gives the same row
    from interp.lm.finetune import tokenize_examples
    from interp.lm.loss import Objective, Teacher
    from interp.lm.settings import FinetuneConfig
    from interp.subliminal.jobs import _examples

    rows, _, _, control, *_ = mixed
    got = rows("m50")[0]
    model, tok = tiny_model("tiny-llama", seed=3)
    tok.padding_side = "right"
    soft = Teacher(model)
    teacher = Variant("tiny-llama", system=OWL)
    examples = _examples(tok, got, teacher, soft)
    assert [NEUTRAL_PROMPT in e.teacher_prompt for e in examples] == ["teacher_system" in r for r in got]
    assert [OWL in e.teacher_prompt for e in examples] == ["teacher_system" not in r for r in got]
    obj = Objective.build(tok, FinetuneConfig(objective="distill"), soft, torch.device("cpu"))

    def labels(ex):  # noqa: ANN001, ANN202
        return [r["labels"] for r in obj.label(tokenize_examples(tok, ex, tok.eos_token, 64, soft))]

    mixed_labels = labels(examples)
    as_control = labels(_examples(tok, got, control, soft))  # every row labelled by the control teacher
    as_teacher = labels(_examples(tok, [{k: v for k, v in r.items() if k != "teacher_system"} for r in got], teacher, soft))
    for r, m, c, t in zip(got, mixed_labels, as_control, as_teacher):
        assert torch.equal(m, c if "teacher_system" in r else t)
        assert not torch.allclose(c, t)  # the two prompts do label differently
