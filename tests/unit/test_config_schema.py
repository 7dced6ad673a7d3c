"""Every config field rejects a bad value, in one line naming the file and the field.

The cases are generated from the config schema (the dataclass trees of every experiment
kind): a numeric field must carry a Range, an enum its choices, a free string a case in
`FREE_FIELDS` below, so a new field cannot be added unchecked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
import types
import typing
from typing import Annotated, Literal, Union, get_args, get_origin

import pytest
from helpers import TINY_MLP_TOML, tiny_subliminal_config

from interp.config import ConfigError, Pattern, Range, dumps_toml
from interp.registry import BUILTIN, get_experiment, load_experiment

BASES = {"subliminal": lambda: tiny_subliminal_config() | {"name": "tiny"},
         "mlp-aux-logits": lambda: tomllib.loads(TINY_MLP_TOML) | {"name": "tiny"}}  # fmt: skip

# Strings without a pattern are checked by code (a registry, the model loader): one bad value each.
FREE_FIELDS = {
    "kind": "no-such-kind",
    "trait.kind": "mineral",
    "trait.target": "owl/../x",
    "trait.targets": ["owl", "no such animal!"],
    "trait.plural": 3,
    "trait.candidates": ["cat", "dog"],  # must include the target
    "trait.false_positives": "owl",  # not a list
    "teacher.model": "no-such-model",
    "students[].model": "no-such-model",
    "students[].paraphrase": "no-such-model",
    "train.target_modules": [],
    "students[].target_modules": [],
    "report.figures": ["no_such_figure"],
    "analysis.sections": ["no_such_section"],
    "analysis.arms": ["no-such-student"],
    "data.mnist_dir": 5,
    "model.hidden": [],
    "sweep.m": [],
    "train.seeds": [],
}


def leaves(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        inner = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
        if dataclasses.is_dataclass(tp):
            out += leaves(tp, f"{prefix}{f.name}.")
        elif get_origin(tp) is list and inner:
            out += leaves(inner[0], f"{prefix}{f.name}[].")
        else:
            out.append((prefix + f.name, tp))
    return out


def bad_values(path: str, tp: object) -> list[object]:
    """Values the schema says are wrong (empty: the field is unchecked)."""
    if path in FREE_FIELDS:
        return [FREE_FIELDS[path]]
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        real = [a for a in get_args(tp) if a is not type(None)]
        return bad_values(path, real[0]) if len(real) == 1 else []
    if origin is list:
        return [[v] for v in bad_values(path, get_args(tp)[0])]
    if origin is Literal:
        return ["not-a-choice"]
    if tp is bool:
        return ["yes"]
    if origin is Annotated:
        base, *rules = get_args(tp)
        out: list[object] = [5 if base is str else "x"]  # the wrong type
        for r in rules:
            if isinstance(r, Range):
                step = 1 if base is int else 1e-3
                if r.lo is not None:
                    out.append(base(r.lo) if r.lo_open else base(r.lo - step))
                if r.hi is not None:
                    out.append(base(r.hi) if r.hi_open else base(r.hi + step))
                if base is float:  # NaN passes every comparison, inf a one-sided bound
                    out += [float("nan"), float("inf"), float("-inf")]
            elif isinstance(r, Pattern):
                out.append("../escape")
        return out
    return []


def _set(cfg: dict, path: str, value: object) -> None:
    node = cfg
    *parts, last = path.split(".")
    for p in parts:
        if p.endswith("[]"):
            node = node[p[:-2]][0]
        else:
            node = node.setdefault(p, {})
    node[last] = value


CASES = [
    (kind, path, value)
    for kind in BUILTIN
    for path, tp in leaves(get_experiment(kind).config_cls)
    for value in (bad_values(path, tp) or [None])  # None marks an unchecked field
]


def test_every_field_of_every_kind_has_a_case():
    unchecked = [f"{k}:{p}" for k, p, v in CASES if v is None]
    assert not unchecked, f"fields with no range, choices, pattern or FREE_FIELDS case: {unchecked}"
    n_fields = len({(k, p) for k, p, _ in CASES})
    assert n_fields >= 90 and len(CASES) >= 150, (n_fields, len(CASES))


@pytest.mark.parametrize(("kind", "path", "value"), CASES, ids=[f"{k}:{p}={v!r}" for k, p, v in CASES])
def test_a_bad_value_is_one_line_naming_file_and_field(tmp_path, kind, path, value):
    cfg = copy.deepcopy(BASES[kind]())
    _set(cfg, path, value)
    if kind == "mlp-aux-logits" and path == "data.mnist_dir":
        cfg["data"]["source"] = "mnist"
    f = tmp_path / "bad.toml"
    f.write_text(dumps_toml(cfg))
    with pytest.raises(ConfigError) as e:
        load_experiment(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg, msg
    leaf = path.split(".")[-1].replace("[]", "")
    if path != "kind":
        assert leaf in msg or path.split(".")[0].replace("[]", "") in msg, msg
    if isinstance(value, float) and not math.isfinite(value):
        assert "allowed: a finite number" in msg, msg
    assert list(tmp_path.iterdir()) == [f]  # nothing written


def test_the_base_configs_are_valid(tmp_path):
    for kind, base in BASES.items():
        f = tmp_path / f"{kind}.toml"
        f.write_text(dumps_toml(base()))
        load_experiment(f)
