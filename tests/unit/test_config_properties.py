"""Property tests (hypothesis, seeded and bounded): any `--set` overrides of any config field, and
any argument list for `interp validate`, end in a valid plan (exit 0) or in exit 2 with exactly
one line on stderr, never a traceback; and every config that validates writes a config.toml
that reads back equal. In-process (`interp.cli.main`), no model weights load."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import tomllib
import typing
from pathlib import Path

import pytest
from helpers import TINY_MLP_TOML, tiny_subliminal_config, write_config
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from interp.cli import main
from interp.config import dumps_toml, to_dict, toml_string
from interp.registry import get_experiment, load_experiment

# bounded and seeded: the same examples every run, the file well under 20 s on one core
BOUNDED = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip


def dotted_fields(cls: type, prefix: str = "") -> list[str]:
    """Every field of a config dataclass tree, as `--set` keys (tables expanded)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += dotted_fields(tp, key + ".")
        else:
            out.append(key)
    return out


def toml_float(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)


ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "a" * 300, "owl\x00", "bald eagle", "q_proj", "tiny-gemma", "org/model", "../..", "x\ny", "é", " "]
)
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from([0, 1, 2, 3, -1, 5, 10**6, 2**31, 2**63 - 1]).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(toml_float),
    st.sampled_from(["nan", "inf", "-inf", "0.0", "1e-300", "1e300", "0.5"]),
    st.booleans().map(lambda b: "true" if b else "false"),
    ODD_TEXT.map(toml_string),  # a TOML string
    ODD_TEXT,  # as typed: read as TOML when it parses, else as a bare string
)
STUDENT = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "x" * 100, "bad name"]).map(toml_string)},
    optional={"model": st.sampled_from(["teacher", "tiny-gemma", "org/none"]).map(toml_string),
              "layers": st.lists(st.integers(-1, 40), max_size=3).map(str),
              "target_modules": st.lists(st.sampled_from(["q_proj", "c_attn", ""]), max_size=3).map(
                  lambda xs: "[" + ", ".join(map(toml_string, xs)) + "]"),
              "method": st.sampled_from(["lora", "full", "adapter"]).map(toml_string),
              "seeds": st.lists(st.integers(-1, 3), max_size=2).map(str)},
).map(lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")  # fmt: skip
VALUES = SCALARS | st.lists(SCALARS, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]") | st.lists(
    STUDENT, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")  # fmt: skip


def near(value: typing.Any) -> st.SearchStrategy[str]:
    """Values of a field's own type around its valid value (most of them valid), as TOML."""
    if isinstance(value, bool):
        return st.booleans().map(lambda b: "true" if b else "false")
    if isinstance(value, int):
        return st.integers(-1, 2 * value + 3).map(str)
    if isinstance(value, float):
        return st.floats(-0.5, 2 * abs(value) + 1).map(toml_float)
    if isinstance(value, str):
        return st.just(toml_string(value)) | ODD_TEXT.map(toml_string)
    if isinstance(value, list) and value and not isinstance(value[0], dict):
        own = [dumps_toml({"v": v}).split(" = ", 1)[1].strip() for v in value]  # the valid items, as TOML
        return st.lists(st.sampled_from(own) | near(value[0]), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    return VALUES


def _leaves(data: dict, prefix: str = "") -> dict[str, typing.Any]:
    out = {}
    for k, v in data.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, tuple[Path, dict[str, typing.Any]]]:
    """kind -> (a valid config file, {dotted field: its valid value}, with keys no config has)."""
    root = tmp_path_factory.mktemp("configs")
    sub = write_config(root, tiny_subliminal_config())
    mlp = root / "mlp.toml"
    mlp.write_text(TINY_MLP_TOML)
    out = {}
    for path in (sub, mlp):
        exp, cfg = load_experiment(path)
        valid = _leaves(to_dict(cfg))
        fields = dotted_fields(get_experiment(exp.kind).config_cls) + ["nope", "data.nope.deeper"]
        out[exp.kind] = (path, {f: valid.get(f) for f in fields})
    return out


def _cli(argv: list[str]) -> tuple[int, list[str], str]:
    """(exit code, non-empty stderr lines, stdout) of `interp <argv>`, in-process."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()], out.getvalue()


def _assert_plan_or_one_line(code: int, err: list[str], argv: list[str]) -> None:
    assert code in (0, 2), (code, argv, err[-3:])
    assert not any("Traceback" in ln for ln in err), (argv, err)
    if code == 2:
        assert len(err) == 1 and "error:" in err[0], (argv, err)


@settings(BOUNDED, max_examples=500)
@given(data=st.data())
def test_any_overrides_give_a_plan_or_one_line(configs, data):
    kind = data.draw(st.sampled_from(sorted(configs)))
    path, fields = configs[kind]
    keys = data.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3))
    sets = [f"{k}={data.draw(st.one_of(near(fields[k]), near(fields[k]), near(fields[k]), VALUES))}" for k in keys]
    argv = ["validate", str(path)] + [x for s in sets for x in ("--set", s)]
    code, err, _ = _cli(argv)
    event(f"exit {code}")  # pytest --hypothesis-show-statistics: how many plans, how many refusals
    _assert_plan_or_one_line(code, err, argv)
    if code == 0:  # what `interp run` would write as config.toml reads back as the same config
        _, cfg = load_experiment(path, sets)
        plain = to_dict(cfg)
        assert tomllib.loads(dumps_toml(plain)) == _without_none(plain), sets


def _without_none(obj: typing.Any) -> typing.Any:
    """What TOML keeps of a dict tree: a None field is left out."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_none(v) for v in obj]
    return obj


ARGS = st.sampled_from(["--set", "-v", "--help", "-h", "--out-dir", "x=1", "name=a", "name", "=", "--", "-",
                        "--set=trait.target=owl", "--nope", "", "data.temperature=nan", "students=[]"])  # fmt: skip


@BOUNDED
@given(data=st.data())
def test_any_validate_arguments_give_a_plan_or_one_line(configs, tmp_path, data):
    (tmp_path / "folder.toml").mkdir(exist_ok=True)
    paths = [str(p) for p, _ in configs.values()] + [str(tmp_path / "missing.toml"), str(tmp_path / "folder.toml")]
    words = data.draw(st.lists(ARGS | st.sampled_from(paths) | ODD_TEXT, max_size=6))
    argv = ["validate", *words]
    code, err, out = _cli(argv)
    event(f"exit {code}")
    if "-v" in words and code != 0:  # -v asks for the traceback; the last line is still the one line
        assert err and "error:" in err[-1], (argv, err)
        return
    _assert_plan_or_one_line(code, err, argv)


@BOUNDED
@given(text=st.text(max_size=60), key=st.text(min_size=1, max_size=12))
def test_the_toml_writer_round_trips_any_text(text, key):
    data = {"s": text, key: [text, 1.5], "t": {key: text}}
    assert tomllib.loads(dumps_toml(data)) == data


def test_a_control_character_in_a_written_string_is_escaped(tmp_path, capsys):
    """A value with control characters (a neutral prompt with a tab, a bell) writes a config.toml
    that TOML reads back equal; before, a raw control character made the file unreadable."""
    text = "line\tone\x07\x1b[0m\r\x7f"
    written = dumps_toml({"teacher": {"model": text}})
    assert "\\u0007" in written and "\\t" in written and "\\u007F" in written
    assert tomllib.loads(written) == {"teacher": {"model": text}}


@pytest.mark.parametrize("field", ["students", "analysis.sections", "analysis.arms", "analysis.incontext_k",
                                   "report.figures", "train.seeds", "train.target_modules", "train.layers"])  # fmt: skip
def test_an_empty_list_is_refused_in_one_line(configs, field):
    path, _ = configs["subliminal"]
    code, err, _ = _cli(["validate", str(path), "--set", f"{field}=[]"])
    assert code == 2 and len(err) == 1, err
    assert field.split(".")[-1] in err[0] and ("empty" in err[0] or "at least one" in err[0]), err
