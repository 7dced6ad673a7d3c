"""Strict TOML configs built from small dataclasses.

Every experiment kind declares a dataclass tree; `load_config` reads a TOML file, applies
`--set key=value` overrides and checks every key and type, raising `ConfigError` that names
the file, the dotted field and the offending value.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric field's allowed interval, as `Annotated[int, Range(1)]`; None: unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, v: float) -> bool:
        if not math.isfinite(v):  # NaN passes every comparison; inf passes a one-sided bound
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'<' if self.hi_open else '<='} {self.hi:g}"


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A string field's allowed form, as `Annotated[str, Pattern(regex, "what it is")]`."""

    regex: str
    what: str

    def ok(self, v: str) -> bool:
        import re

        return re.fullmatch(self.regex, v) is not None

    def __str__(self) -> str:
        return self.what


# The field types of every config (a numeric field without a Range fails tests/unit/test_config_schema.py)
PosInt = Annotated[int, Range(1)]
NonNegInt = Annotated[int, Range(0)]
Seed = Annotated[int, Range(0, 2**32 - 1)]
PosFloat = Annotated[float, Range(0, lo_open=True)]
NonNegFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]  # strictly between 0 and 1
UnitFloat = Annotated[float, Range(0, 1, hi_open=True)]  # [0, 1)
LearningRate = Annotated[float, Range(0, 1, lo_open=True)]
Temperature = Annotated[float, Range(0, 100, lo_open=True)]  # 0 would be greedy: not a sample
SafeName = Annotated[str, Pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}",
                                  "a name of letters, digits, '.', '_' or '-' (a safe folder name)")]  # fmt: skip
Device = Annotated[str, Pattern(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N")]


class ConfigError(ValueError):
    """A config problem, phrased as one line naming file, field and value."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *rules = get_args(tp)
        return " ".join([_type_name(inner), *(str(r) for r in rules)])
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check `value` against annotation `tp`; return it (ints widen to float)."""

    def fail(extra: str = "") -> typing.NoReturn:
        raise ConfigError(
            f"{source}: field '{where}' has value {value!r} ({type(value).__name__}); "
            f"expected {_type_name(tp)}{extra}"
        )

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        inner, *rules = get_args(tp)
        value = _coerce(value, inner, where, source)
        for rule in rules:
            if isinstance(rule, (Range, Pattern)) and not rule.ok(value):
                finite = "a finite number " if isinstance(value, float) else ""
                raise ConfigError(f"{source}: field '{where}' has value {value!r}; allowed: {finite}{rule}")
        return value
    if origin is Literal:
        if value not in get_args(tp):
            fail()
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message (its range, its choices)
            return _coerce(value, real[0], where, source)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError:
                continue
        fail()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(" (a table)")
        return build(tp, value, source=source, prefix=where)
    if origin is list:
        if not isinstance(value, list):
            fail()
        (arg,) = get_args(tp)
        return [_coerce(v, arg, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        _, varg = get_args(tp)
        return {k: _coerce(v, varg, f"{where}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        return float(value)  # finite or not: a Range says (every numeric field has one)
    if tp is str:
        if not isinstance(value, str):
            fail()
        if any("\ud800" <= ch <= "\udfff" for ch in value):  # undecodable bytes: no file can hold them
            raise ConfigError(f"{source}: field '{where}' has value {value!r}; allowed: text (valid Unicode)")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")


def build(cls: type[T], data: dict[str, Any], *, source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass `cls` from a plain dict, rejecting unknown keys and wrong types."""
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{where}' (known keys here: {known})")
        kwargs[key] = _coerce(value, hints[key], where, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = ", ".join(f"{prefix}.{m}" if prefix else m for m in missing)
        raise ConfigError(f"{source}: missing required field(s) {where}")
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {prefix or 'config'}: {e}") from e
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value`; the value is read as TOML, falling back to a bare string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a table")
        node[path[-1]] = value
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        found = path.exists()
    except OSError as e:  # a name too long for the file system, an unreadable parent
        raise ConfigError(f"{path}: cannot read the config ({type(e).__name__}: {e.strerror or e})") from e
    if not found:
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, not UTF-8
        raise ConfigError(f"{path}: cannot read the config ({type(e).__name__}: {e})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain TOML/JSON-able data (for manifests and keys)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dumps_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for resolved configs (tables, arrays of tables, scalars, lists)."""
    out: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return toml_string(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{toml_key(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    def emit(table: dict[str, Any], name: str) -> None:
        simple = {k: v for k, v in table.items() if v is not None and not _is_table(v)}
        nested = {k: v for k, v in table.items() if _is_table(v)}
        for k, v in simple.items():
            out.append(f"{toml_key(k)} = {scalar(v)}")
        for k, v in nested.items():
            full = f"{name}.{toml_key(k)}" if name else toml_key(k)
            if isinstance(v, list):
                for item in v:
                    out.append(f"\n[[{full}]]")
                    emit(item, full)
            else:
                out.append(f"\n[{full}]")
                emit(v, full)

    emit(data, "")
    return "\n".join(out).lstrip() + "\n"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(v: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped, so any
    Python string (a target, a prompt, a path) reads back equal."""
    out = []
    for ch in v:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(k: str) -> str:
    """A key bare where TOML allows it (letters, digits, '_', '-'), quoted otherwise."""
    import re

    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_string(k)


def _is_table(v: Any) -> bool:
    return isinstance(v, dict) or (
        isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
    )
