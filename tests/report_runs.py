"""Real run folders for the report and hypothesis-script tests, built once per session.

Both test modules call `real_runs(tmp_path_factory)`; the folders live under the session's
base temp dir, so the second caller reuses the first one's runs (tiny random models: ~25 s
for the subliminal run with its analyses, a few seconds for the MLP run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import TINY_MLP_TOML, tiny_subliminal_config, write_config

from interp.cli import main

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
