"""A sweep file: a base config and the axes to expand, every point checked before anything runs.

    # sweeps/example.toml
    base = "../runs/transmission.toml"      # relative to this file
    name = "example"                         # default: the file's stem
    [set]                                    # fixed overrides of every point (optional)
    "eval.bootstrap" = 200
    [axes]                                   # the grid: every combination, in this order
    "trait.target" = ["owl", "fox"]
    "train.seeds" = [[0], [1]]
    "train.lr" = [1e-3, 3e-4]
    [resources]                              # per task (optional)
    cpus = 1                                 # threads a task's torch uses
    gpus = 0.25                              # Ray: a fraction (several students share a GPU);
                                             # Slurm: rounded up to whole GPUs
    [slurm]                                  # passed to submitit for --engine slurm (optional)
    partition = "gpu"
    timeout_min = 120

Any config field can be an axis (a dotted key, as `interp run --set`). Fields that must move
together form one zipped axis: their keys joined by commas, one list of values per entry
(`"train.lora_r,train.lora_alpha" = [[1, 1], [8, 8]]`; or a grid whose lr range differs per
method). The points are named p000, p001, ... in grid order; each is a whole run config, validated here by the experiment's
own schema, so a bad axis value is one line naming the sweep file, the axis and the value.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.config import ConfigError, dumps_toml, to_dict
from interp.registry import Experiment, load_experiment

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TOP = {"base", "name", "set", "axes", "resources", "slurm"}
_SLURM = {"partition": str, "timeout_min": int, "mem_gb": (int, float), "account": str, "qos": str}


def toml_value(v: Any) -> str:
    """A value as an inline TOML literal (the right-hand side of `--set key=value`); lists of
    tables stay inline (`[{name = "a"}, ...]`), so a `[[students]]` list can be an axis."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return dumps_toml({"v": v}).split("=", 1)[1].strip()


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


@dataclass(frozen=True)
class Point:
    """One grid point: its name and its axis values (dotted key -> value)."""

    name: str
    values: dict[str, Any]

    def overrides(self, fixed: dict[str, Any]) -> list[str]:
        """`--set` items of this point: the fixed ones, its axis values, its run name."""
        items = {**fixed, **self.values}
        return [f"{k}={toml_value(v)}" for k, v in items.items()] + [f"name={self.name}"]

    def label(self) -> str:
        return ", ".join(f"{k}={toml_value(v)}" for k, v in self.values.items())


def axis_keys(axis: str) -> list[str]:
    """The dotted keys of one axis: one, or several zipped (`"a.b,c.d"`)."""
    return [k.strip() for k in axis.split(",")]


def axis_entries(axis: str, value: Any) -> dict[str, Any]:
    """One value of an axis as dotted key -> value (a zipped axis's value is one per key)."""
    keys = axis_keys(axis)
    return dict(zip(keys, value)) if len(keys) > 1 else {keys[0]: value}


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class Sweep:
    path: Path
    name: str
    base: Path
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    resources: Resources
    slurm: dict[str, Any]
    points: list[Point] = field(default_factory=list)
    # per point: the experiment and its validated config (the resolved TOML is its identity)
    configs: dict[str, tuple[Experiment, Any]] = field(default_factory=dict, repr=False)

    def point(self, name: str) -> Point:
        return next(p for p in self.points if p.name == name)

    def resolved_toml(self, point: str) -> str:
        return dumps_toml(to_dict(self.configs[point][1]))


def sweep_root(sweep: Sweep, out_dir: str | Path | None = None) -> Path:
    """The sweep's folder: `<out_dir or the sweep file's folder>/<name>`."""
    return (Path(out_dir) if out_dir else sweep.path.parent) / sweep.name


def _fail(path: Path, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file and every config it expands to; nothing is written."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML: {e}") from e
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise _fail(path, f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_TOP))}")
    if not isinstance(raw.get("base"), str):
        raise _fail(path, f"field 'base' has value {raw.get('base')!r}; expected the path of a run config")
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise _fail(path, f"field 'base' has value {raw['base']!r}: {base} does not exist")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(path, f"field 'name' has value {name!r}; expected a safe folder name")
    fixed = raw.get("set", {})
    if not isinstance(fixed, dict):
        raise _fail(path, f"field 'set' has value {fixed!r}; expected a table of dotted keys")
    axes = raw.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise _fail(path, "field 'axes' is missing or empty; expected a table of dotted key = [values]")
    for k, vals in axes.items():
        if not isinstance(vals, list) or not vals:
            raise _fail(path, f"field 'axes.\"{k}\"' has value {vals!r}; expected a non-empty list of values")
        keys = axis_keys(k)
        if "name" in keys:
            raise _fail(path, "field 'axes.\"name\"': a point's name is set by the sweep")
        if len(set(keys)) != len(keys) or not all(keys):
            raise _fail(path, f"field 'axes.\"{k}\"': a zipped axis names each key once, joined by commas")
        wrong = next((v for v in vals if len(keys) > 1 and (not isinstance(v, list) or len(v) != len(keys))), None)
        if wrong is not None:
            raise _fail(path, f"field 'axes.\"{k}\"' has value {wrong!r}; a zipped axis takes lists of "
                              f"{len(keys)} values, one per key")
        if len({toml_value(v) for v in vals}) != len(vals):
            raise _fail(path, f"field 'axes.\"{k}\"' has value {vals!r}: a value is repeated")
    res = raw.get("resources", {})
    bad = sorted(set(res) - {"cpus", "gpus"}) if isinstance(res, dict) else ["resources"]
    if bad:
        raise _fail(path, f"field 'resources.{bad[0]}' is unknown; allowed: cpus, gpus")
    cpus, gpus = res.get("cpus", 1), res.get("gpus", 0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= 1024:
        raise _fail(path, f"field 'resources.cpus' has value {cpus!r}; allowed: a number in (0, 1024]")
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not 0 <= gpus <= 64:
        raise _fail(path, f"field 'resources.gpus' has value {gpus!r}; allowed: a number in [0, 64]")
    slurm = raw.get("slurm", {})
    for k, v in slurm.items():
        if k not in _SLURM:
            raise _fail(path, f"field 'slurm.{k}' is unknown; allowed: {', '.join(_SLURM)}")
        if isinstance(v, bool) or not isinstance(v, _SLURM[k]):
            raise _fail(path, f"field 'slurm.{k}' has value {v!r} of the wrong type")
    seen = [key for k in axes for key in axis_keys(k)]
    twice = next((key for key in seen if seen.count(key) > 1), None)
    if twice is not None:
        raise _fail(path, f"field 'axes': key {twice!r} is in two axes")
    sweep = Sweep(path, name, base, fixed, axes, Resources(float(cpus), float(gpus)), slurm)
    for i, combo in enumerate(itertools.product(*axes.values())):
        point = Point(f"p{i:03d}", {key: v for axis, value in zip(axes, combo)
                                    for key, v in axis_entries(axis, value).items()})
        try:
            sweep.configs[point.name] = load_experiment(base, point.overrides(fixed))
        except ConfigError as e:
            raise _fail(path, f"point {point.name} ({point.label()}): {e}") from e
        sweep.points.append(point)
    return sweep
