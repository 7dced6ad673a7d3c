"""The analysis driver (`interp analyze runs/<name>`): mechanism analyses over a finished subliminal run.

Loads the run's artifacts (teacher and student deltas, datasets, models), calls the pure
functions in `interp.analysis`, and writes `runs/<name>/analysis.json`. Expensive pieces
(gradients, activations, steering) are stages, cached like the rest of the run. Sections that
a run cannot support (e.g. update alignment without a finetuned teacher) are listed under
`missing` with the reason, never silently dropped.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.analysis.alignment import (
    aggregate_over_seeds,
    delta_cosines,
    delta_subspace_angles,
    span_share,
)
from interp.analysis.detection_run import (
    data_controls,
    data_stage,
    detection,
    divergence,
    missing_reason,
)
from interp.analysis.directions import best_layer, direction_cosine_ci, mean_difference
from interp.analysis.entanglement_run import entanglement
from interp.analysis.first_order import first_order
from interp.analysis.incontext import incontext
from interp.analysis.matrix_run import matrix_mechanisms
from interp.analysis.probes import apply_probes, train_probes
from interp.analysis.table import comparison_table
from interp.analysis.trajectories import imitation_alignment, trajectories
from interp.analysis.update_matrix import shares_teacher_init, teacher_seeds, update_matrix
from interp.config import ConfigError, build
from interp.extras import backend_module, missing
from interp.lm.delta import Delta
from interp.lm.models import Variant, format_prompt, resolved_names
from interp.lm.record import load_activations, residual_stream, save_activations
from interp.lm.steer import add_direction, project_out
from interp.registry import ANALYSIS_SECTIONS
from interp.stats import paired_bootstrap_diff
from interp.store.artifacts import load_run
from interp.store.stages import RunDir, Stage, read_jsonl, stable_hash, write_json
from interp.subliminal.config import AnalysisConfig, StudentConfig, SubliminalConfig
from interp.subliminal.evaluate import logprob_score
from interp.subliminal.number_data import number_prompts

log = logging.getLogger("interp")


def _load_summary(run_root: Path) -> tuple[dict, dict]:
    """(summary, config) of a finished subliminal run, through the one artifact reader; else
    one ConfigError line saying which file and why (absent, unreadable, stale)."""
    run = load_run(run_root)
    for art in ("summary", "config"):
        if getattr(run, art) is None:
            raise ConfigError(f"{run_root}: {run.problems[art]}; run `interp run` on this config first")
    if run.experiment != "subliminal":
        raise ConfigError(f"{run_root / 'summary.json'}: 'experiment' is {run.experiment!r}; analyses need a subliminal run")
    return run.summary, run.config


class _Ctx:
    """What every section needs: the run, its config, its artifacts."""

    def __init__(self, run_root: Path, acfg: AnalysisConfig):
        self.root = run_root
        self.summary, self.cfg = _load_summary(run_root)
        self.a = acfg
        self.art = self.summary["artifacts"]
        self.device, self.dtype = self.cfg["device"], self.cfg["dtype"]
        self.run = RunDir(run_root, self.cfg["seed"], *resolved_names(self.device, self.dtype))
        # the typed config: what the experiment itself used (student bases, traits), not a re-derivation
        self.config: SubliminalConfig = build(SubliminalConfig, self.cfg, source=str(run_root / "config.toml"))
        self.teacher_spec = self.config.teacher.model
        self.students = {s["name"]: s for s in self.cfg["students"]}
        self._student_cfg = {s.name: s for s in self.config.students}

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

    def trait(self):
        return self.trait_for(self.summary["trait"]["target"])  # the primary target

    def trait_for(self, target: str):
        return self.config.trait.trait(target)


# ---------------------------------------------------------------- sections


def update_alignment(ctx: _Ctx) -> dict[str, Any]:
    out = {}
    for name, spec, t_path in ctx.students_with_teacher():
        teacher = Delta.load(t_path)
        per_seed = {}
        for seed in ctx.art["students"][name]:
            student = Delta.load(ctx.student_delta(name, seed))
            cos = delta_cosines(student, teacher)
            entry = {
                "overall": cos["overall"], "per_layer": cos["per_layer"], "per_module": cos["per_module"],
                "norm_ratio": cos["norms"]["ratio"], "notes": cos["notes"],
                "shares_teacher_init": shares_teacher_init(ctx, name, seed),
            }  # fmt: skip
            if ctx.a.subspace_rank:
                angles = delta_subspace_angles(student, teacher, rank=ctx.a.subspace_rank)
                entry["subspace"] = angles.to_dict()["per_module"]
                entry["span_share"] = span_share(student, teacher, rank=ctx.a.subspace_rank)
            per_seed[seed] = entry
        layers = sorted({int(k) for e in per_seed.values() for k in e["per_layer"]})
        modules = sorted({k for e in per_seed.values() for k in e["per_module"]})
        out[name] = {
            "against": f"teacher:{spec}",
            "overall": aggregate_over_seeds([e["overall"] for e in per_seed.values()]).to_dict(),
            # the linear picture: share of the student's update inside the teacher's top singular span
            "span_share": aggregate_over_seeds([e["span_share"]["share"] for e in per_seed.values()]).to_dict()
            | {"baseline": float(np.mean([e["span_share"]["baseline"] for e in per_seed.values()]))}
            if ctx.a.subspace_rank else None,
            "per_seed": per_seed,
            "per_layer_mean": [float(np.nanmean([_get(e["per_layer"], i) for e in per_seed.values()])) for i in layers],
            "per_module_mean": {m: float(np.nanmean([e["per_module"].get(m, np.nan) for e in per_seed.values()])) for m in modules},
        }  # fmt: skip
    return {"students": out}


def _get(d: dict, layer: int) -> float:
    return d.get(layer, d.get(str(layer), float("nan")))


def gradient_alignment(ctx: _Ctx) -> dict[str, Any]:
    """At each student's init: does the descent direction of its own training loss (hard labels,
    or its teacher's soft labels where it distils) point toward its base's teacher?"""
    from interp.analysis.first_order import LOSS_SETTINGS

    out = {}
    for name, spec, t_path in ctx.students_with_teacher():
        s = ctx.student_cfg(name)
        settings = s.settings(ctx.config.train)
        seed = ctx.config.seeds_of(s)[0]
        params = {"student": name, "base": spec, "teacher_delta": Variant(spec, delta_path=t_path).identity(),
                  "data": ctx.art["data"][ctx.students[name]["data"]],  # the folder name carries its key
                  "batches": ctx.a.gradient_batches, "batch_size": ctx.a.gradient_batch_size,
                  "n_boot": ctx.a.n_boot, "seed": ctx.cfg["seed"]}  # fmt: skip
        if settings.objective == "distill":  # keyed only when on, so hard-label stages keep their keys
            params["loss"] = {k: getattr(settings, k) for k in LOSS_SETTINGS} | {"row_seed": seed}
        st = ctx.run.stage(f"analysis/gradient/{name}", params)
        if not st.done:
            with st.running() as folder:
                res = imitation_alignment(ctx, name, seed, None, Delta.load(t_path).to_dense())
                write_json(folder / "gradient.json", res)
                gc.collect()
        res = json.loads((st.path / "gradient.json").read_text())
        o = res["overall"]
        out[name] = {
            "against": f"teacher:{spec}", "data": ctx.students[name]["data"], "cos": o["cos"],
            "cos_ci": o["cos_ci"], "frac_positive": o["frac_positive"], "pooled_cos": o["pooled_cos"],
            "groups": {g: {k: v[k] for k in ("cos_ci", "frac_positive", "pooled_cos")}
                       for g, v in res["groups"].items() if g in ("attention", "mlp")},
            "sign_convention": res["sign_convention"],
        }  # fmt: skip
    return {"datasets": out}


def _record(ctx: _Ctx, label: str, variant: Variant, prompts: dict[str, list[str]],
            loaded: Callable[[], tuple[Any, Any]] | None = None) -> Stage:  # fmt: skip
    """Residual stream at the last prompt token for each prompt set, stored as safetensors.
    `loaded`: the variant's weights, already loaded by the caller (shared by several records)."""
    params = {
        "model": variant.identity(),
        "backend": ctx.a.backend,
        "sets": {k: len(v) for k, v in prompts.items()},
        "prompts": stable_hash(prompts),  # the texts, not only their counts
    }
    st = ctx.run.stage(f"record/{label}", params)
    if st.done:
        return st
    with st.running() as folder:
        model, tok = loaded() if loaded is not None else variant.load(ctx.device, ctx.dtype)
        for set_name, users in prompts.items():
            texts = [format_prompt(tok, u, variant.system) for u in users]
            acts = residual_stream(
                model, tok, texts, backend=ctx.a.backend, batch_size=ctx.a.batch_size
            )
            meta = {"model": label, "backend": ctx.a.backend, "positions": "last", "prompt_set": set_name,
                    "layer_axis": 1, "system_prompt": variant.system}  # fmt: skip
            save_activations(folder, set_name, acts, meta)
        del model
        gc.collect()
    return st


def activations(ctx: _Ctx) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Stage]]:
    """Record every model needed by the direction, probe and steering sections."""
    trait = ctx.trait()
    sets = {"eval": trait.question_texts(ctx.a.n_prompts),
            "numbers": number_prompts(ctx.a.n_number_prompts, seed=ctx.cfg["seed"] + 1)}  # fmt: skip
    acts: dict[str, dict[str, torch.Tensor]] = {}
    stages: dict[str, Stage] = {}
    for spec in sorted({ctx.spec_of(n) for n in ctx.students}):
        # the base and the prompted base: one set of weights and one wrapper, loaded when first needed
        load_base = functools.cache(functools.partial(Variant(spec).load, ctx.device, ctx.dtype))
        for label, variant in (
            (f"base:{spec}", Variant(spec)),
            (f"prompted:{spec}", Variant(spec, system=trait.system_prompt)),
        ):
            st = stages[label] = _record(ctx, label.replace(":", "-"), variant, sets, load_base)
            acts[label] = {k: load_activations(st.path, k)[0] for k in sets}
        load_base.cache_clear()
        gc.collect()
    for name in ctx.students:
        seed = sorted(ctx.art["students"][name])[0]
        variant = Variant(ctx.spec_of(name), delta_path=ctx.student_delta(name, seed))
        st = stages[name] = _record(ctx, f"{name}-seed{seed}", variant, sets)
        acts[name] = {k: load_activations(st.path, k)[0] for k in sets}
    return acts, stages


def trait_direction(ctx: _Ctx, acts: dict) -> dict[str, Any]:
    out, layers = {}, {}
    for name in ctx.students:
        spec = ctx.spec_of(name)
        trait_a, neutral_a = acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"]
        control = [
            c
            for c in ctx.students
            if c != name and ctx.spec_of(c) == spec and ctx.students[c]["data"] == "control"
        ]
        res = direction_cosine_ci(
            trait_a, neutral_a, acts[name]["eval"], neutral_a, n_boot=ctx.a.n_boot, seed=ctx.cfg["seed"],
            control_acts=acts[control[0]]["eval"] if control and name not in control else None,
        )  # fmt: skip
        out[name] = {"against": f"base:{spec}", **res}
        layers[spec] = trait_a.shape[1]
    return {"backend": ctx.a.backend, "prompt_set": "eval", "n_layers": layers, "students": out}


def probes(ctx: _Ctx, acts: dict) -> dict[str, Any]:
    bases, students = {}, {}
    for spec in sorted({ctx.spec_of(n) for n in ctx.students}):
        res = train_probes(
            acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"], seed=ctx.cfg["seed"]
        )
        bases[spec] = res.to_dict()
        for name in ctx.students:
            if ctx.spec_of(name) == spec:
                students[name] = {
                    "against": f"base:{spec}",
                    **apply_probes(res, acts[name]["eval"]),
                }
        students[f"base:{spec}"] = {
            "against": f"base:{spec}",
            **apply_probes(res, acts[f"base:{spec}"]["numbers"]),
        }
    return {
        "bases": bases,
        "students": students,
        "note": "base:<spec> rows apply the probe to the base on number prompts",
    }


def steering(ctx: _Ctx, acts: dict, stages: dict[str, Stage]) -> dict[str, Any]:
    """Sufficiency: add the direction to the base. Necessity: project it out of the student."""
    spec = ctx.teacher_spec
    trait = ctx.trait()
    trait_a, neutral_a = acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"]
    direction = mean_difference(trait_a, neutral_a)
    layer, _ = best_layer(trait_a, neutral_a)
    student = next(
        (n for n in ctx.students if ctx.spec_of(n) == spec and ctx.students[n]["data"] == "trait"),
        None,
    )
    params = {
        "layer": layer,
        "scale": ctx.a.steering_scale,
        "student": student,
        "eval": ctx.cfg["eval"],
        "trait": ctx.cfg["trait"],  # target and candidates
        "seed": ctx.cfg["seed"],
    }
    inputs = {k: stages[k] for k in (f"prompted:{spec}", f"base:{spec}", student) if k in stages}
    st = ctx.run.stage("analysis/steering", params, inputs)
    if not st.done:
        from interp.subliminal.evaluate import EvalConfig

        settings, eval_seed = EvalConfig(**ctx.cfg["eval"]), ctx.cfg["seed"]
        with st.running() as folder:
            model, tok = Variant(spec).load(ctx.device, ctx.dtype)
            base = logprob_score(model, tok, trait, settings, seed=eval_seed)
            with add_direction(model, layer, direction[layer], ctx.a.steering_scale):
                steered = logprob_score(model, tok, trait, settings, seed=eval_seed)
            res = {
                "layer": layer,
                "scale": ctx.a.steering_scale,
                "sufficiency": _pair(base, steered, "base", "steered"),
            }
            if student:
                seed = sorted(ctx.art["students"][student])[0]
                model, tok = Variant(spec, delta_path=ctx.student_delta(student, seed)).load(
                    ctx.device, ctx.dtype
                )
                plain = logprob_score(model, tok, trait, settings, seed=eval_seed)
                all_layers = list(range(direction.shape[0]))
                with project_out(model, all_layers, {i: direction[i] for i in all_layers}):
                    ablated = logprob_score(model, tok, trait, settings, seed=eval_seed)
                # Specificity control: removing any one direction from every layer perturbs the
                # model; a random direction per layer shows how much of the drop is generic.
                gen = torch.Generator().manual_seed(ctx.cfg["seed"])
                rand = {i: torch.randn(direction.shape[1], generator=gen) for i in all_layers}
                with project_out(model, all_layers, rand):
                    random_ablated = logprob_score(model, tok, trait, settings, seed=eval_seed)
                res["necessity"] = {
                    "student": f"{student}/seed{seed}",
                    **_pair(plain, ablated, "unablated", "ablated"),
                    "random_direction": _pair(plain, random_ablated, "unablated", "ablated"),
                }
            write_json(folder / "steering.json", res)
            del model
            gc.collect()
    return json.loads((st.path / "steering.json").read_text())


def _pair(a: dict, b: dict, na: str, nb: str) -> dict[str, Any]:
    keep = ("mean", "lo", "hi", "n")
    diff = paired_bootstrap_diff(b["per_question"], a["per_question"]).to_dict()
    return {na: {k: a[k] for k in keep}, nb: {k: b[k] for k in keep}, "diff": diff}


# ---------------------------------------------------------------- driver


def _delta_sections(ctx: _Ctx, result: dict[str, Any]) -> None:
    if ctx.art.get("teacher_deltas"):
        result["update_alignment"] = update_alignment(ctx)
        result["gradient_alignment"] = gradient_alignment(ctx)
    else:
        mode = ctx.art.get("teacher_mode")
        where = "a steering vector" if mode == "steered" else "a system prompt"
        why = f"teacher.mode = '{mode}': the trait lives in {where}, there is no teacher delta"
        result["missing"] |= {"update_alignment": why, "gradient_alignment": why}


def _update_matrix(ctx: _Ctx, result: dict[str, Any]) -> None:
    um = update_matrix(ctx)
    if um is None:
        result["missing"]["update_matrix"] = (
            "needs >= 2 targets (trait.targets) whose teachers have weight deltas (teacher.mode = 'finetuned')"
        )
    else:
        result["update_matrix"] = um


def _trajectories(ctx: _Ctx, result: dict[str, Any]) -> None:
    if not ctx.a.trajectories:
        result["missing"]["trajectories"] = "off; set [analysis] trajectories = true"
        return
    if _absent(ctx, result, ["trajectories"], *backend_module(ctx.a.backend)):
        return
    traj = trajectories(ctx)
    if traj is None:
        result["missing"]["trajectories"] = "no student saved checkpoints (set checkpoint_every on a [[students]] entry)"
    else:
        result["trajectories"] = traj


def _data_sections(ctx: _Ctx, result: dict[str, Any]) -> None:
    """Divergence tokens, detection, the in-context control and the controls table (issue 11)."""
    why = missing_reason(ctx)
    sections = {"divergence": ctx.a.detection, "detection": ctx.a.detection, "incontext": ctx.a.incontext}
    for name, on in sections.items():
        if not on:
            flag = "detection" if name == "divergence" else name
            result["missing"][name] = f"off; set [analysis] {flag} = true"
        elif why:
            result["missing"][name] = why
    if why is None and ctx.a.detection:
        result["divergence"] = divergence(ctx)
        if not _absent(ctx, result, ["detection"], "sklearn"):
            result["detection"] = detection(ctx)
    if why is None and ctx.a.incontext:
        names = [*ctx.config.trait.target_list(), "control"]
        result["incontext"] = incontext(ctx, {n: read_jsonl(data_stage(ctx, n).path / "dataset.jsonl") for n in names})
    if len(ctx.config.trait.target_list()) < 2:
        result["missing"]["data_controls"] = "gamma needs >= 2 targets (trait.targets)"
    elif why:
        result["missing"]["data_controls"] = why
    else:
        result["data_controls"] = data_controls(ctx, result.get("incontext"))



def _first_order(ctx: _Ctx, result: dict[str, Any]) -> None:
    if not ctx.a.first_order:
        result["missing"]["first_order"] = "off; set [analysis] first_order = true"
    elif len(ctx.config.trait.target_list()) < 2:
        result["missing"]["first_order"] = "the prediction is compared on the trait matrix: needs >= 2 targets (trait.targets)"
    elif "teachers" not in ctx.art:
        result["missing"]["first_order"] = "summary.json does not list each target's teacher; rerun `interp run`"
    else:
        result["first_order"] = first_order(ctx)


def _absent(ctx: _Ctx, result: dict[str, Any], sections: Sequence[str], *modules: str) -> bool:
    """When an optional package that `sections` need is not installed: list each as missing with
    why, log one line, and return True (the caller skips them)."""
    absent = next((m for m in modules if missing(m)), None)
    if absent is None or not sections:
        return False
    why = missing(absent)
    if absent in backend_module(ctx.a.backend):  # the recording backend: HF hooks need nothing more
        why += "; or set [analysis] backend = 'hf'"
    for name in sections:
        result["missing"][name] = why
    log.warning("analysis: %s skipped: %s", ", ".join(sections), why)
    return True


SECTIONS = ANALYSIS_SECTIONS


def _previous(run_root: Path, config_key: str | None) -> dict[str, Any]:
    """The run's earlier analysis.json when it analysed this same run (same config key), else {}."""
    path = run_root / "analysis.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) and config_key and old.get("config_key") == config_key else {}


def analyze_run(run_root: str | Path, acfg: AnalysisConfig | None = None, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute every section the run supports (or those in `only`); write and return analysis.json."""
    run_root = Path(run_root)
    only = only or (acfg.sections if acfg is not None else None)
    bad = sorted(set(only or ()) - set(SECTIONS))
    if bad:
        raise ConfigError(f"--only: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    if acfg is None:
        summary_cfg = _load_summary(run_root)[1]
        acfg = build(
            AnalysisConfig,
            summary_cfg.get("analysis", {}),
            source=str(run_root / "config.toml"),
            prefix="analysis",
        )
        only = only or acfg.sections
        bad = sorted(set(only or ()) - set(SECTIONS))
        if bad:
            raise ConfigError(f"analysis.sections: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    ctx = _Ctx(run_root, acfg)
    result: dict[str, Any] = {"experiment": "subliminal-analysis", "name": ctx.summary["name"],
                              "config_key": ctx.summary.get("config_key"),
                              "teacher_mode": ctx.art.get("teacher_mode"), "missing": {}}  # fmt: skip
    want = (lambda name: True) if not only else (lambda name: name in only)  # noqa: E731
    if want("update_alignment") or want("gradient_alignment"):
        _delta_sections(ctx, result)
    if want("update_matrix"):
        _update_matrix(ctx, result)
    if want("matrix_mechanisms") and len(ctx.summary["trait"].get("targets") or []) >= 2:
        if ctx.art.get("teacher_mode") == "prompt" or "teachers" in ctx.art:
            if not _absent(ctx, result, ["matrix_mechanisms"], *backend_module(ctx.a.backend), "sklearn"):
                result["matrix_mechanisms"] = matrix_mechanisms(ctx)
        else:  # a summary written before the teachers were listed in its artifacts
            result["missing"]["matrix_mechanisms"] = "summary.json does not list each target's teacher; rerun `interp run`"
    if want("entanglement"):
        if ctx.a.entanglement and ctx.config.trait.kind == "misalignment":
            result["missing"]["entanglement"] = "token entanglement pairs numbers with one-word candidates; misalignment is scored on answer pairs"
        elif ctx.a.entanglement and ctx.config.data.kind != "numbers":
            result["missing"]["entanglement"] = f"token entanglement scores numbers 0..999; this run's data is '{ctx.config.data.kind}'"
        elif ctx.a.entanglement:
            result["entanglement"] = entanglement(ctx)
        else:
            result["missing"]["entanglement"] = "off; set [analysis] entanglement = true"
    if any(want(n) for n in ("divergence", "detection", "incontext", "data_controls")):
        _data_sections(ctx, result)
    if want("trajectories"):
        _trajectories(ctx, result)
    if want("first_order"):
        _first_order(ctx, result)
    recorded = [n for n in ("trait_direction", "probes", "steering") if want(n)]
    if recorded and not _absent(ctx, result, recorded, *backend_module(ctx.a.backend)):
        acts, stages = activations(ctx)
        result["trait_direction"] = trait_direction(ctx, acts)
        if missing("sklearn") is None:
            result["probes"] = probes(ctx, acts)
        else:
            _absent(ctx, result, [n for n in recorded if n == "probes"], "sklearn")
        result["steering"] = steering(ctx, acts, stages)
    previous = _previous(run_root, result["config_key"]) if only else {}
    kept = []
    for name in SECTIONS:
        if not want(name):
            result.pop(name, None)
            if name in previous:  # an earlier analysis of this same run: kept, not recomputed
                result[name] = previous[name]
                kept.append(name)
            elif name in previous.get("missing", {}):
                result["missing"][name] = previous["missing"][name]
            else:
                result["missing"][name] = "not requested (interp analyze --only " + ",".join(only or ()) + ")"
    result["table"] = comparison_table(result, list(ctx.students))
    result["provenance"] = {"analysis_config": acfg.__dict__, "only": list(only) if only else None,
                            "stage_wall_s": dict(ctx.run.timings),
                            "kept_from_earlier_analysis": kept or None}  # fmt: skip
    write_json(run_root / "analysis.json", result)
    return result
