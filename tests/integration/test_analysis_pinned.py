"""A pinned tiny run (two targets, finetuned teachers, every analysis on): its summary and
analysis values equal those recorded before the analyses became units (issue 33: the redesign
changes shape, not results). The recorded file, tests/data/pinned_two_targets.json, was written
by the code at b0cf0db (`record()` below); paths, keys, timings and provenance are left out of
the comparison, every number is compared.

Tolerances: the same code on two machines differs in float rounding. The file recorded on an
avx512_bf16 EPYC and a run on an AVX2-only one with a newer transformers (5.25; which of the two
mattered was not separated) differ by up to 1e-5 in values (scores rounded to 5 decimals crossing
a rounding edge) and 7e-4 in interval ends (t-quantiles over two targets amplify the noise: 2e-4
of the interval's width at most). So a number must agree within 2e-5 or 1e-3 of its size, and an
interval's end also within 1% of the interval's width; any change of what is computed moves values far past that."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from helpers import tiny_subliminal_config, write_config

from interp.cli import main

PINNED = Path(__file__).resolve().parents[1] / "data" / "pinned_two_targets.json"
# paths, stage keys, versions, timings; and the analyses added after the pin (their sections
# and `missing` entries)
LEFT_OUT = {"provenance", "config_key", "artifacts", "shift_ablation", "steer_sufficiency", "task_loss", "weight_split",
            "gamma_per_seed_target", "every_arm"}
ANALYSIS = {"enabled": True, "n_prompts": 12, "n_number_prompts": 4, "gradient_batches": 2,
            "gradient_batch_size": 2, "n_boot": 100, "backend": "hf",
            "entanglement": True, "entangle_prompts": 2, "entangle_top_k": 2,
            "detection": True, "judge_trials": 4, "judge_rows": 2, "incontext": True, "incontext_k": [1],
            "trajectories": True, "first_order": True}  # fmt: skip


def pinned_run(out: Path) -> Path:
    cfg = tiny_subliminal_config()
    cfg["teacher"].update({"mode": "finetuned", "answers_per_prompt": 1, "answer_filter": "none",
                           "answer_max_new_tokens": 12})  # fmt: skip
    cfg["trait"] = {"kind": "animal", "targets": ["owl", "cat"]}
    cfg["analysis"] = ANALYSIS
    cfg["students"][0]["checkpoint_every"] = 1
    assert main(["run", str(write_config(out, cfg, "two")), "--out-dir", str(out)]) == 0
    return out / "two"


def values(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: values(v) for k, v in obj.items() if k not in LEFT_OUT}
    if isinstance(obj, list):
        return [values(v) for v in obj]
    return obj


def record(run: Path) -> None:
    """Write the pinned file from a finished pinned run."""
    res = {f: values(json.loads((run / f"{f}.json").read_text())) for f in ("summary", "analysis")}
    PINNED.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")


REL, ABS, WIDTH = 1e-3, 2e-5, 0.01  # see the module's docstring


def differences(old: Any, new: Any, path: str = "", slack: float = 0.0) -> list[str]:
    """Where `new` differs from `old`; `slack` widens the absolute tolerance (interval ends)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{path}/{k}: only in {'the new run' if k in new else 'the pinned file'}"
               for k in sorted(set(old) ^ set(new))]  # fmt: skip
        lo, hi = old.get("lo"), old.get("hi")
        width = abs(hi - lo) if isinstance(lo, float) and isinstance(hi, float) else 0.0
        return out + [d for k in sorted(set(old) & set(new))
                      for d in differences(old[k], new[k], f"{path}/{k}", WIDTH * width if k in ("lo", "hi") else 0.0)]  # fmt: skip
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items pinned, {len(new)} now"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(old, float) and isinstance(new, float | int):
        same = math.isclose(old, new, rel_tol=REL, abs_tol=max(ABS, slack)) or (math.isnan(old) and math.isnan(new))
        return [] if same else [f"{path}: pinned {old!r}, now {new!r}"]
    return [] if old == new else [f"{path}: pinned {old!r}, now {new!r}"]


def test_summary_and_analysis_equal_the_pinned_values(tmp_path):
    pinned = json.loads(PINNED.read_text())
    run = pinned_run(tmp_path)
    now = {f: values(json.loads((run / f"{f}.json").read_text())) for f in ("summary", "analysis")}
    assert pinned["analysis"]["update_matrix"] and pinned["analysis"]["steering"]  # the file covers them
    diff = differences(pinned, now)
    assert not diff, f"{len(diff)} values changed:\n" + "\n".join(diff[:30])


def _first_float(obj: Any, path: tuple = ()) -> tuple | None:
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        if isinstance(v, float):
            return (*path, k)
        found = _first_float(v, (*path, k))
        if found:
            return found
    return None


def test_the_comparison_sees_a_changed_number_and_a_lost_section():
    pinned = json.loads(PINNED.read_text())
    edited = json.loads(PINNED.read_text())
    *parent, last = _first_float(edited["analysis"]["steering"])
    node = edited["analysis"]["steering"]
    for k in parent:
        node = node[k]
    node[last] += 1e-3 + 0.05 * abs(node[last])  # a 5% change: far past float noise on any CPU
    del edited["analysis"]["probes"]
    diff = differences(pinned, edited)
    assert len(diff) == 2 and diff[0] == "/analysis/probes: only in the pinned file", diff
    assert diff[1].startswith("/analysis/steering/") and "now" in diff[1], diff


def test_an_interval_end_may_move_by_a_percent_of_its_width_and_no_more():
    ci = {"mean": 0.5, "lo": 0.0, "hi": 1.0}
    assert differences(ci, {"mean": 0.5, "lo": 0.009, "hi": 0.991}) == []
    assert len(differences(ci, {"mean": 0.5, "lo": 0.011, "hi": 1.0})) == 1
    assert len(differences(ci, {"mean": 0.509, "lo": 0.0, "hi": 1.0})) == 1  # the width's slack is the ends' only
