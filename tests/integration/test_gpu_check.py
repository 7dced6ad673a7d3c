"""scripts/gpu_check.py (`make gpu-check`) on CPU with tiny models: the one-command GPU check is
wired end to end (runs/transmission-gpu.toml's arms with gamma, interval and p per arm; stage
timings), and a run that outlives its time is stopped and reported with what it finished."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp / "check.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    return p.returncode, json.loads(out.read_text()) if out.exists() else {}, p.stdout + p.stderr


def test_the_dry_run_reports_every_arm_of_the_gpu_matrix(tmp_path):
    rc, res, log = _check(tmp_path, "--only", "transmission-gpu")
    assert rc == 0, log[-3000:]
    part = res["parts"]["transmission-gpu"]
    assert part["returncode"] == 0 and res["dry_run"] is True
    # the dry run keeps the shipped config's arms (their models swapped for tiny ones)
    shipped = tomllib.loads((ROOT / "runs" / "transmission-gpu.toml").read_text())["students"]
    trait_arms = {s["name"] for s in shipped if s.get("data", "trait") == "trait"}
    assert set(part["arms"]) == trait_arms, part["arms"].keys()
    for name, arm in part["arms"].items():
        assert arm["seeds"] == 2 and arm["gamma"] is not None and 0 < arm["p"] <= 1, name
        lo, hi = arm["gamma_ci"]
        assert lo <= hi and arm["gamma_per_seed"] and len(arm["gamma_per_seed"]) == 2
    assert part["arms"]["cross-model"]["model"] == "tiny-gemma"
    names = [s["stage"] for s in part["stages"]]
    assert any(n.startswith("generate/") for n in names) and any(n.startswith("student/") for n in names)
    assert any(s.get("stacked") for s in part["stages"])  # the LoRA arms trained stacked


def test_a_run_past_its_time_is_stopped_and_its_finished_stages_reported(tmp_path):
    rc, res, log = _check(tmp_path, "--only", "transmission-gpu", "--part-timeout", "3")
    part = res["parts"]["transmission-gpu"]
    assert rc == 1 and part["returncode"] == 124 and part["error"].startswith("timed out"), log[-2000:]
    assert part["wall_s"] < 60  # stopped, not left to finish
    assert isinstance(part["stages"], list)  # what it finished (possibly nothing yet), not a crash
