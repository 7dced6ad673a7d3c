"""What the suite knows by name: experiment kinds (a config dataclass plus a run function,
found by `kind`) and the figure ids a report can contain (configs validate against them)."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interp.config import ConfigError, apply_overrides, build, read_toml

# An experiment's functions take (config, run folder): the run folder is an
# `interp.store.stages.RunDir`, a layer above the registry, so it is typed by name only here.
RunDir = Any

# The analyses of `interp analyze`, in the order they run and appear in analysis.json: each is
# one unit (`interp.analysis.unit.Analysis`) declared as `ANALYSIS` by the
# module named here, imported on demand. Adding an analysis: one new module and one line here.
# Configs name them in [analysis] sections, checked before any work.
_ANALYSES = (
    ("update_alignment", "interp.analysis.update_alignment"),
    ("gradient_alignment", "interp.analysis.gradient_alignment"),
    ("update_matrix", "interp.analysis.update_matrix"),
    ("weight_split", "interp.analysis.weight_split"),
    ("matrix_mechanisms", "interp.analysis.matrix_mechanisms"),
    ("shift_ablation", "interp.analysis.shift_ablation"),
    ("steer_sufficiency", "interp.analysis.steer_sufficiency"),
    ("task_loss", "interp.analysis.task_loss"),
    ("entanglement", "interp.analysis.entanglement"),
    ("divergence", "interp.analysis.divergence"),
    ("detection", "interp.analysis.detection"),
    ("incontext", "interp.analysis.incontext"),
    ("data_controls", "interp.analysis.data_controls"),
    ("trajectories", "interp.analysis.trajectories"),
    ("first_order", "interp.analysis.first_order"),
    ("trait_direction", "interp.analysis.trait_direction"),
    ("probes", "interp.analysis.probes"),
    ("steering", "interp.analysis.steering"),
)


def _unique(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, module in pairs:
        if name in out:
            raise ValueError(f"analysis {name!r} is registered twice ({out[name]}, {module})")
        out[name] = module
    return out


ANALYSES: dict[str, str] = _unique(_ANALYSES)
ANALYSIS_SECTIONS = tuple(ANALYSES)


def load_analysis(name: str) -> Any:
    """The `interp.analysis.unit.Analysis` registered as `name` (its module imported now)."""
    unit = importlib.import_module(ANALYSES[name]).ANALYSIS
    if unit.name != name:
        raise ValueError(f"{ANALYSES[name]} declares the analysis {unit.name!r}, registered as {name!r}")
    return unit


# Every figure id a report can contain, in the order they appear within a run.
FIGURE_IDS = (
    "trait_scores",
    "trait_matrix",
    "update_alignment",
    "gradient_alignment",
    "trait_direction",
    "probes",
    "trajectories",
    "mlp_accuracy",
    "mlp_cosine",
    "lora_rank",
)

# Built-in kinds are imported on demand so `import interp` stays light.
BUILTIN = {"subliminal": "interp.subliminal.experiment", "mlp-aux-logits": "interp.mlp.experiment"}


@dataclass(frozen=True)
class Experiment:
    kind: str
    config_cls: type
    run: Callable[[Any, RunDir], dict[str, Any]]  # returns the summary (with a "table" of rows)
    # The stages every run of a data identity shares (teachers and their data), computed
    # without the students: a sweep runs them once per identity before the runs that read them.
    prepare: Callable[[Any, RunDir], None] | None = None
    # What `prepare` reads, as plain data: runs with equal identities share its stages.
    data_identity: Callable[[Any], Any] | None = None


REGISTRY: dict[str, Experiment] = {}


def register_experiment(
    kind: str, config_cls: type, prepare: Callable[[Any, RunDir], None] | None = None,
    data_identity: Callable[[Any], Any] | None = None,
) -> Callable:  # fmt: skip
    """Decorator: `@register_experiment("name", MyConfig)` on `def run(cfg, run_dir) -> summary`.

    `prepare(cfg, run_dir)` and `data_identity(cfg)`, optional: the run's shared first stages
    alone, and what they read (see `Experiment`).

    Registering a kind twice is an error (two experiments cannot answer to one name).
    """

    def deco(fn: Callable) -> Callable:
        if kind in REGISTRY and REGISTRY[kind].run is not fn:
            raise ValueError(f"experiment kind {kind!r} is registered twice ({REGISTRY[kind].run.__module__}, {fn.__module__})")
        REGISTRY[kind] = Experiment(kind, config_cls, fn, prepare, data_identity)
        return fn

    return deco


def get_experiment(kind: str, source: str = "<config>") -> Experiment:
    if kind not in REGISTRY and kind in BUILTIN:
        importlib.import_module(BUILTIN[kind])
    if kind not in REGISTRY:
        known = ", ".join(sorted(set(BUILTIN) | set(REGISTRY)))
        raise ConfigError(f"{source}: field 'kind' has value {kind!r}; known kinds: {known}")
    return REGISTRY[kind]


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> tuple[Experiment, Any]:
    """Read, override and validate a config file; returns (experiment, config object)."""
    path = Path(path)
    raw = apply_overrides(read_toml(path), overrides or [])
    raw.setdefault("name", path.stem)
    kind = raw.get("kind", "subliminal")
    if not isinstance(kind, str):
        raise ConfigError(f"{path}: field 'kind' has value {kind!r}; expected a string")
    exp = get_experiment(kind, str(path))
    raw["kind"] = kind
    return exp, build(exp.config_cls, raw, source=str(path))


def derived_seed(*key: int | str) -> int:
    """A well-mixed 32-bit seed for one purpose, from the run's seed and labels naming the purpose
    (a model index, "teacher", a target...). Streams with different keys are independent, so two
    purposes never draw the same random numbers by sharing a seed. Strings enter via a stable hash."""
    import zlib

    ints = [int(k) if isinstance(k, int | np.integer) else zlib.crc32(str(k).encode()) for k in key]
    if any(k < 0 for k in ints):
        raise ValueError(f"derived_seed: keys must be >= 0, got {key!r}")
    return int(np.random.SeedSequence(ints).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
