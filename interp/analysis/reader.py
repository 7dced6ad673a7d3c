"""The one reader of a finished subliminal run for the analyses: `AnalysisRun`.

Every analysis reads the run through it (as TransformerLens code reads activations through one
`ActivationCache`): the typed config the run used, its artifacts (teacher and student deltas,
datasets), the recorded activations shared by the sections that need them, and the sections
already computed in this call. Opened through `interp.store.artifacts.load_run`, so an absent,
unreadable or stale summary or config is one line naming the file.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from interp.config import ConfigError, build
from interp.lm.models import Variant, format_prompt, resolved_names
from interp.lm.record import load_activations, residual_stream, save_activations
from interp.store.artifacts import load_run
from interp.store.stages import RunDir, Stage, stable_hash
from interp.subliminal.config import AnalysisConfig, StudentConfig, SubliminalConfig
from interp.subliminal.number_data import number_prompts
from interp.subliminal.traits import AnyTrait

log = logging.getLogger("interp")


def load_summary(run_root: Path) -> tuple[dict, dict]:
    """(summary, config) of a finished subliminal run, through the one artifact reader; else
    one ConfigError line saying which file and why (absent, unreadable, stale)."""
    run = load_run(run_root)
    for art in ("summary", "config"):
        if getattr(run, art) is None:
            raise ConfigError(f"{run_root}: {run.problems[art]}; run `interp run` on this config first")
    if run.experiment != "subliminal":
        raise ConfigError(f"{run_root / 'summary.json'}: 'experiment' is {run.experiment!r}; analyses need a subliminal run")
    return run.summary, run.config


class AnalysisRun:
    """What every analysis needs: the run, its config, its artifacts.

    `config` is the typed config the experiment used; `cfg` the same as written (raw TOML
    values: stage keys hash them as they are); `a` the analysis settings (the run's [analysis] unless given); `art` the summary's
    artifact paths (relative to `root`); `run` the run folder's stage store; `results` the
    sections computed so far in this `interp analyze` call."""

    def __init__(self, run_root: Path, acfg: AnalysisConfig | None = None):
        self.root = run_root
        self.summary, self.cfg = load_summary(run_root)
        self.art: dict[str, Any] = self.summary["artifacts"]
        self.device, self.dtype = self.cfg["device"], self.cfg["dtype"]
        self.run = RunDir(run_root, self.cfg["seed"], *resolved_names(self.device, self.dtype))
        self.config: SubliminalConfig = build(SubliminalConfig, self.cfg, source=str(run_root / "config.toml"))
        self.a = acfg if acfg is not None else self.config.analysis  # the run's own [analysis] by default
        self.teacher_spec = self.config.teacher.model
        self.students: dict[str, dict[str, Any]] = {s["name"]: s for s in self.cfg["students"]}
        self._student_cfg = {s.name: s for s in self.config.students}
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------ config and artifacts

    def spec_of(self, student: str) -> str:
        return self.config.student_model(self._student_cfg[student])

    def student_cfg(self, student: str) -> StudentConfig:
        return self._student_cfg[student]

    @functools.cached_property
    def teacher_seeds(self) -> dict[str, set[int]]:
        return teacher_seeds(self)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def student_delta(self, name: str, seed: str) -> Path:
        return self.path(self.art["students"][name][seed]) / "delta.safetensors"

    def teacher_delta(self, spec: str) -> Path | None:
        rel = self.art.get("teacher_deltas", {}).get(spec)
        return self.path(rel) / "delta.safetensors" if rel else None

    def students_with_teacher(self) -> list[tuple[str, str, Path]]:
        """(student, its base spec, that base's teacher delta) for students that have one."""
        out = []
        for name in self.students:
            spec = self.spec_of(name)
            t_path = self.teacher_delta(spec)
            if t_path is not None:
                out.append((name, spec, t_path))
        return out

    def trait(self) -> AnyTrait:
        return self.trait_for(self.summary["trait"]["target"])  # the primary target

    def trait_for(self, target: str) -> AnyTrait:
        return self.config.trait.trait(target)

    # ------------------------------------------------------------ activations

    @functools.cached_property
    def recorded(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Stage]]:
        """Residual streams at the last prompt token of every model the direction, probe and
        steering analyses read (each base, each prompted base, each student's first seed), on
        the trait's eval questions and on number prompts: (activations by label and prompt
        set, the record stage of each label). Recorded once per call, cached as stages."""
        trait = self.trait()
        sets = {"eval": trait.question_texts(self.a.n_prompts),
                "numbers": number_prompts(self.a.n_number_prompts, seed=self.cfg["seed"] + 1)}  # fmt: skip
        acts: dict[str, dict[str, torch.Tensor]] = {}
        stages: dict[str, Stage] = {}
        for spec in sorted({self.spec_of(n) for n in self.students}):
            # the base and the prompted base: one set of weights, loaded when first needed
            load_base = functools.cache(functools.partial(Variant(spec).load, self.device, self.dtype))
            for label, variant in (
                (f"base:{spec}", Variant(spec)),
                (f"prompted:{spec}", Variant(spec, system=trait.system_prompt)),
            ):
                st = stages[label] = self.record(label.replace(":", "-"), variant, sets, load_base)
                acts[label] = {k: load_activations(st.path, k)[0] for k in sets}
            load_base.cache_clear()
            gc.collect()
        for name in self.students:
            seed = sorted(self.art["students"][name])[0]
            variant = Variant(self.spec_of(name), delta_path=self.student_delta(name, seed))
            st = stages[name] = self.record(f"{name}-seed{seed}", variant, sets)
            acts[name] = {k: load_activations(st.path, k)[0] for k in sets}
        return acts, stages

    def record(self, label: str, variant: Variant, prompts: dict[str, list[str]],
               loaded: Callable[[], tuple[Any, Any]] | None = None) -> Stage:  # fmt: skip
        """Residual stream at the last prompt token for each prompt set, stored as safetensors.
        `loaded`: the variant's weights, already loaded by the caller (shared by several records)."""
        params = {
            "model": variant.identity(),
            "backend": self.a.backend,
            "sets": {k: len(v) for k, v in prompts.items()},
            "prompts": stable_hash(prompts),  # the texts, not only their counts
        }

        def write(folder: Path) -> None:
            model, tok = loaded() if loaded is not None else variant.load(self.device, self.dtype)
            for set_name, users in prompts.items():
                texts = [format_prompt(tok, u, variant.system) for u in users]
                acts = residual_stream(model, tok, texts, backend=self.a.backend, batch_size=self.a.batch_size)
                meta = {"model": label, "backend": self.a.backend, "positions": "last", "prompt_set": set_name,
                        "layer_axis": 1, "system_prompt": variant.system}  # fmt: skip
                save_activations(folder, set_name, acts, meta)
            del model
            gc.collect()

        return self.run.compute(f"record/{label}", params, write)


def teacher_seeds(ctx: AnalysisRun) -> dict[str, set[int]]:
    """Per base spec, the seeds its weight-delta teachers trained with, as their stage manifests
    record them (runs before teachers had their own seed stream trained them with the run's seed;
    a teacher folder without a manifest counts as that)."""
    rels = [(r["spec"], r["delta"]) for r in (ctx.art.get("teachers") or {}).values() if r.get("delta")]
    rels += [(spec, str(Path(r) / "delta.safetensors")) for spec, r in (ctx.art.get("teacher_deltas") or {}).items()]
    seeds: dict[str, set[int]] = {}
    for spec, rel in rels:
        manifest = ctx.path(rel).parent / "manifest.json"
        seed = int(json.loads(manifest.read_text())["params"]["seed"]) if manifest.exists() else ctx.cfg["seed"]
        seeds.setdefault(spec, set()).add(seed)
    return seeds


def shares_teacher_init(ctx: AnalysisRun, name: str, seed: int | str) -> bool:
    """Whether student entry `name` on `seed` can start from a teacher's LoRA A matrices: it
    trains LoRA (as finetuned teachers always do) on a base with a teacher trained with that seed
    (see `interp.analysis.update_matrix`)."""
    if ctx.student_cfg(name).settings(ctx.config.train).method != "lora":
        return False
    return int(seed) in ctx.teacher_seeds.get(ctx.spec_of(name), set())
