"""The hypothesis scripts in analyses/: run as a researcher would (a subprocess per script and
run folder), each ends with exactly one well-formed VERDICT line and exits 0, also when the
data it needs is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from report_runs import real_runs

from interp.hypothesis import Verdict

ROOT = Path(__file__).resolve().parents[2]
VERDICT = re.compile(
    r"^VERDICT hypothesis=(?P<id>[a-z_]+) "
    r"result=(?P<result>supported|not supported|inconclusive|not testable) "
    r"statistic=(?P<stat_name>[A-Za-z_]+):(?P<stat>\S+) effect=(?P<effect>\S+) "
    r"ci=\[(?P<lo>\S+), (?P<hi>\S+)\] p=(?P<p>\S+) n=(?P<n>\d+)$"
)
SCRIPTS = {
    "shared_init_required": "shared_init",
    "update_alignment": "update_alignment",
    "trait_direction": "trait_direction",
    "mlp_theorem": "mlp_theorem",
    "transmission": "transmission",
    "entanglement": "entanglement",
    "detection": "detection",
    "data_controls": "data_controls",
    "incontext": "incontext",
    "first_order": "first_order",
}
# (script, run) -> is the hypothesis testable on that run?
CASES = [
    ("shared_init_required", "subliminal", True),
    ("shared_init_required", "mlp", False),
    ("update_alignment", "subliminal", True),
    ("update_alignment", "no_analysis", False),
    ("update_alignment", "partial", False),
    ("trait_direction", "subliminal", True),
    ("trait_direction", "no_analysis", False),
    ("mlp_theorem", "mlp", True),
    ("mlp_theorem", "subliminal", False),
    ("mlp_theorem", "unfinished", False),
    ("transmission", "subliminal", False),  # one target: no matrix to test
    ("transmission", "mlp", False),
    ("entanglement", "subliminal", False),  # its analysis ran without entanglement = true
    ("detection", "subliminal", False),  # one target, no control data (quickstart-shaped): stated missing
    ("data_controls", "subliminal", False),
    ("incontext", "subliminal", False),
    ("first_order", "subliminal", False),  # its analysis ran without first_order = true
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return real_runs(tmp_path_factory)


def run_script(script: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INTERP_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "analyses" / f"{script}.py"), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    return proc.returncode, proc.stdout + ("\n" + proc.stderr if proc.returncode else "")


def parse(out: str) -> re.Match:
    lines = out.strip().splitlines()
    assert sum(line.startswith("VERDICT") for line in lines) == 1, out
    m = VERDICT.match(lines[-1])
    assert m, f"malformed verdict line: {lines[-1]!r}"
    for key in ("stat", "effect", "lo", "hi", "p"):
        float(m[key])  # a number or nan, never "n/a"
    return m


@pytest.mark.parametrize(("script", "run", "testable"), CASES)
def test_verdict_line(runs, script, run, testable):
    rc, out = run_script(script, str(runs[run]))
    assert rc == 0, out
    m = parse(out)
    assert m["id"] == SCRIPTS[script]
    assert (m["result"] != "not testable") == testable, out
    if testable:
        assert int(m["n"]) > 0 and m["stat_name"] != "none"
        lo, hi, effect = float(m["lo"]), float(m["hi"]), float(m["effect"])
        assert lo <= effect <= hi or m["result"] == "inconclusive", out
        p = float(m["p"])
        assert p != p or 0 <= p <= 1


def test_mlp_verdict_uses_per_seed_data(runs):
    """n counts the seeds of both student kinds at the primary (largest) m."""
    rc, out = run_script("mlp_theorem", str(runs["mlp"]))
    assert rc == 0 and parse(out)["n"] == "6"  # 3 seeds x 2 kinds
    assert "m=3 aux" in out and "primary comparison: m=3" in out


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_no_or_bad_argument_is_not_testable(script, tmp_path):
    rc, out = run_script(script, str(tmp_path / "missing"))
    assert rc == 0 and parse(out)["result"] == "not testable"


def test_no_arguments():
    rc, out = run_script("mlp_theorem")
    assert rc == 0 and "no run directory given" in out and parse(out)["result"] == "not testable"


def test_verdict_rejects_unknown_result():
    with pytest.raises(ValueError):
        Verdict("x", "maybe")
    line = Verdict("x", "not testable").line()
    assert VERDICT.match(line) and "ci=[nan, nan]" in line


def test_update_alignment_leaves_out_seeds_that_share_the_teachers_lora_init(runs, tmp_path):
    """A seed flagged `shares_teacher_init` has an update cosine inflated by construction: the
    script says so and tests without it (two seeds per role become one: too few for the
    update-cosine test, so it falls back to the gradient cosines)."""
    import json
    import shutil

    run = tmp_path / "shared"
    shutil.copytree(runs["subliminal"], run)
    an = json.loads((run / "analysis.json").read_text())
    for entry in an["update_alignment"]["students"].values():
        entry["per_seed"]["0"]["shares_teacher_init"] = True
    (run / "analysis.json").write_text(json.dumps(an))
    (rc0, out0), (rc1, out1) = run_script("update_alignment", str(runs["subliminal"])), run_script("update_alignment", str(run))
    assert rc0 == rc1 == 0, out1
    assert "left out" not in out0 and "1 seed(s) used, 1 left out (LoRA init shared with the teacher)" in out1, out1
    assert "test: update cosine over seeds" in out0 and "test: update cosine over seeds" not in out1, out1
    parse(out1)
