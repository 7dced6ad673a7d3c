"""Real run folders for the report and hypothesis-script tests, built once per session.

Both test modules call `real_runs(tmp_path_factory)`; the folders live under the session's
base temp dir, so the second caller reuses the first one's runs (tiny random models: ~25 s
for the subliminal run with its analyses, a few seconds for the MLP run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_MLP_TOML, tiny_subliminal_config, write_config

from interp.cli import main
from interp.stats import t_interval
from interp.subliminal import matrix as mx
from interp.subliminal.experiment import WEAK_TEACHER_NATS

# A finetuned teacher gives teacher deltas, so every analysis section exists; answer_filter
# "none" because a random tiny model never names the target.
ANALYSIS = {"enabled": True, "n_prompts": 12, "n_number_prompts": 4, "gradient_batches": 2,
            "gradient_batch_size": 2, "n_boot": 100, "backend": "hf", "subspace_rank": 2}  # fmt: skip


def real_runs(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"subliminal": with analysis.json, "no_analysis": the same run without it,
    "partial": analysis.json with two sections moved to `missing`, "mlp": tiny MLP run,
    "unfinished": a folder without summary.json}."""
    root = factory.getbasetemp() / "report-runs"
    done = root / "done.json"
    if done.exists():
        return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
    root.mkdir(exist_ok=True)
    cfg = tiny_subliminal_config(train__seeds=[0, 1])
    cfg["teacher"].update({"mode": "finetuned", "answers_per_prompt": 1, "answer_filter": "none",
                           "answer_max_new_tokens": 12})  # fmt: skip
    cfg["analysis"] = ANALYSIS
    assert main(["run", str(write_config(root, cfg, "tinysub")), "--out-dir", str(root)]) == 0
    sub = root / "tinysub"
    assert (sub / "analysis.json").exists()

    no_an = root / "tinysub-noanalysis"
    shutil.copytree(sub, no_an)
    (no_an / "analysis.json").unlink()

    # Sections absent the way `interp analyze` records them: dropped, with a reason.
    partial = root / "tinysub-partial"
    shutil.copytree(sub, partial)
    an = json.loads((partial / "analysis.json").read_text())
    for sec in ("update_alignment", "gradient_alignment"):
        del an[sec]
        an["missing"][sec] = "teacher.mode = 'prompt': no teacher delta (test)"
    (partial / "analysis.json").write_text(json.dumps(an))

    mlp_cfg = root / "mlp-tiny.toml"
    mlp_cfg.write_text(f'name = "mlp-tiny"\n{TINY_MLP_TOML}')
    assert main(["run", str(mlp_cfg), "--out-dir", str(root)]) == 0

    unfinished = root / "unfinished"
    (unfinished / "stages").mkdir(parents=True)
    runs = {"subliminal": sub, "no_analysis": no_an, "partial": partial,
            "mlp": root / "mlp-tiny", "unfinished": unfinished}  # fmt: skip
    done.write_text(json.dumps({k: str(v) for k, v in runs.items()}))
    return runs


# Arms of the synthetic matrix: (base, objective, distill_vocab, seeds, planted effect in nats).
MATRIX_ARMS = {
    "distill-full": ("teacher", "distill", "full", 3, 0.8),
    "sft": ("teacher", "sft", None, 3, 0.0),
    "cross-model": ("tiny-gemma", "distill", "numbers", 1, 0.3),
}


def _matrix_arm(rng, model, objective, vocab, n_seeds, effect, teacher_shift, cols, control):
    """An arm as `interp.subliminal.experiment._arm` writes it, from shifts with a planted diagonal."""
    k, n_cand = teacher_shift.shape
    per_seed = rng.normal(0, 0.15, (n_seeds, k, n_cand))
    per_seed[:, np.arange(k), cols] += effect
    mean = per_seed.mean(axis=0)
    test = mx.permutation_test(mean, teacher_shift, cols, seed=0)
    per = [mx.gamma(p, cols) for p in per_seed]
    own = np.array([mean[i, c] for i, c in enumerate(cols)])
    arm = {"model": model, "objective": objective, "method": "lora", "distill_vocab": vocab,
           "shifts": mean.round(5).tolist(), **test.to_dict(), "gamma_per_seed": per,
           "gamma_ci": t_interval(per).to_dict(), "own_shift": own.round(5).tolist()}  # fmt: skip
    if control is not None:
        arm["did_vs_control"] = t_interval(own - control[cols]).to_dict()
    targets_ci = t_interval(mx.per_target_gamma(mean, cols)).to_dict()
    return arm, targets_ci


def matrix_run(src: Path, dest: Path) -> Path:
    """A copy of the tiny run whose summary holds a five-target trait matrix with three arms
    (planted transmission, none, one seed cross-model) and whose analysis.json has the data
    controls' per-target intervals: the report only reads artifacts, so this is all it sees."""
    if dest.exists():
        return dest
    shutil.copytree(src, dest)
    summary = json.loads((dest / "summary.json").read_text())
    base = summary["models"]["base"]["model"]
    cands = summary["trait"]["candidates"]
    targets = [summary["trait"]["target"]] + [c for c in cands if c != summary["trait"]["target"]][
        :4
    ]
    cols = [cands.index(t) for t in targets]
    rng = np.random.default_rng(7)
    teacher_shift = rng.normal(0, 0.2, (len(targets), len(cands)))
    teacher_shift[np.arange(len(targets)), cols] += [2.0] * (len(targets) - 1) + [
        0.0
    ]  # the last one weak
    control = rng.normal(0.05, 0.1, len(cands))  # the control students' drift, teacher's base only
    arms, rows = {}, []
    for name, (model, objective, vocab, n_seeds, effect) in MATRIX_ARMS.items():
        model = base if model == "teacher" else model
        arms[name], targets_ci = _matrix_arm(rng, model, objective, vocab, n_seeds, effect, teacher_shift, cols,
                                             control if model == base else None)  # fmt: skip
        rows.append({"arm": name, "variant": "unmodified", "model": model, "seeds": list(range(n_seeds)),
                     "gamma": arms[name]["gamma"], "gamma_ci": arms[name]["gamma_ci"],
                     "p_gamma": arms[name]["p_gamma"], "gamma_ci_targets": targets_ci})  # fmt: skip
    own = {t: float(teacher_shift[i, c]) for i, (t, c) in enumerate(zip(targets, cols))}
    notes = [f"teacher of '{t}' shifts its own target by only {v:.2f} nats (< {WEAK_TEACHER_NATS})"
             for t, v in own.items() if v < WEAK_TEACHER_NATS]  # fmt: skip
    summary["matrix"] = {"targets": targets, "candidates": cands, "teacher_own_shift": own,
                         "teacher_shift": teacher_shift.round(5).tolist(), "arms": arms, "notes": notes}  # fmt: skip
    (dest / "summary.json").write_text(json.dumps(summary))
    an = json.loads((dest / "analysis.json").read_text())
    an["data_controls"] = {"rows": rows, "reference": "distill-full"}
    an.get("missing", {}).pop("data_controls", None)
    (dest / "analysis.json").write_text(json.dumps(an))
    return dest
