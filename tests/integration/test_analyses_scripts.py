"""The hypothesis scripts in analyses/: run as a researcher would (a subprocess per script and
run folder), each ends with exactly one well-formed VERDICT line and exits 0, also when the
data it needs is missing."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from report_runs import real_runs
from scipy import stats

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
    if testable:  # the numbers themselves: test_testable_verdicts_are_recomputed_from_the_raw_values
        assert int(m["n"]) > 0 and m["stat_name"] != "none"


def _welch(a, b):
    """effect, lo, hi, t, p of mean(a) - mean(b) by the Welch-Satterthwaite formulas."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    d, se = a.mean() - b.mean(), np.sqrt(va + vb)
    half = stats.t.ppf(0.975, df) * se
    return d, d - half, d + half, d / se, 2 * stats.t.sf(abs(d / se), df)


def _decide(lo, hi):
    return "supported" if lo > 0 else "not supported" if hi < 0 else "inconclusive"


def _expected(script, run):
    """(statistic, effect, lo, hi, p, result or None) of a script's verdict, recomputed here from
    the values the run saved (eval.json, analysis.json, summary.json); None: not checked here."""
    an = json.loads((run / "analysis.json").read_text()) if (run / "analysis.json").exists() else None
    s = json.loads((run / "summary.json").read_text())
    if script == "update_alignment":  # Welch over seeds of the overall update cosine
        per = {k: [e["overall"] for e in an["update_alignment"]["students"][k]["per_seed"].values()]
               for k in ("same-init", "control")}  # fmt: skip
        d, lo, hi, t, p = _welch(per["same-init"], per["control"])
        return t, d, lo, hi, p, _decide(lo, hi)
    if script == "mlp_theorem":  # Welch over seeds at the largest m (its decision rule is its own)
        block = s["per_m"][max(s["per_m"], key=int)]
        d, lo, hi, t, p = _welch(block["same-init/aux"]["acc"]["per_seed"], block["cross-init/aux"]["acc"]["per_seed"])
        return t, d, lo, hi, p, None
    if script == "trait_direction":  # the paired difference at the probe's best layer, z from its CI
        td = an["trait_direction"]["students"]["same-init"]["diff_vs_control"]
        layer = an["probes"]["bases"]["tiny-llama"]["best_layer"]
        d, lo, hi = td["mean"][layer], td["lo"][layer], td["hi"][layer]
        z = d / ((hi - lo) / (2 * stats.norm.ppf(0.975)))
        return z, d, lo, hi, 2 * stats.norm.sf(abs(z)), _decide(lo, hi)
    # shared_init: per question, (same-init - base) - (cross-model - its base), seeds averaged
    ev = s["artifacts"]["evals"]
    q = lambda label: np.array(json.loads((run / ev[label] / "eval.json").read_text())["logprob"]["per_question"])  # noqa: E731
    gain = lambda name, base: np.mean([q(f"{name}/seed{k}") for k in (0, 1)], axis=0) - q(base)  # noqa: E731
    d = gain("same-init", "base") - gain("cross-model", f"base:{s['students']['cross-model']['model']}")
    t = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    flips = [abs(np.mean(np.array(sg) * d)) for sg in itertools.product((-1, 1), repeat=d.size)]
    p = np.mean([f >= abs(d.mean()) - 1e-12 for f in flips])  # the exact sign-flip p
    return t, d.mean(), None, None, p, "inconclusive" if p >= 0.05 else None


@pytest.mark.parametrize(("script", "run"), [(s, r) for s, r, testable in CASES if testable])
def test_testable_verdicts_are_recomputed_from_the_raw_values(runs, script, run):
    rc, out = run_script(script, str(runs[run]))
    m = parse(out)
    stat, effect, lo, hi, p, result = _expected(script, runs[run])
    close = lambda x: pytest.approx(x, rel=2e-3, abs=1e-6)  # noqa: E731  (the line has 4 significant digits)
    assert (float(m["stat"]), float(m["effect"]), float(m["p"])) == (close(stat), close(effect), close(p)), out
    if lo is not None:
        assert (float(m["lo"]), float(m["hi"])) == (close(lo), close(hi)), out
    if result is not None:
        assert m["result"] == result, out


def _planted(src: Path, dest: Path, edit) -> Path:
    """A copy of run `src` whose analysis.json `edit` changed (the scripts read only artifacts)."""
    import shutil

    if not dest.exists():
        shutil.copytree(src, dest)
    an = json.loads((src / "analysis.json").read_text())
    edit(an)
    (dest / "analysis.json").write_text(json.dumps(an))
    return dest


def _set_update_cosines(same, control):
    def edit(an):
        st = an["update_alignment"]["students"]
        for name, vals in (("same-init", same), ("control", control)):
            for e, v in zip(st[name]["per_seed"].values(), vals):
                e["overall"] = v

    return edit


def _set_aurocs(aucs):
    def edit(an):
        an["missing"].pop("detection", None)
        an["detection"] = {"targets": {t: {d: {"auroc": a, "lo": a - 0.1, "hi": min(a + 0.1, 1.0), "n_pos": 8, "n_neg": 8}
                                           for d in ("scan", "classifier", "judge")} for t, a in aucs.items()}}  # fmt: skip

    return edit


@pytest.mark.parametrize(("script", "edit", "supported"), [
    # the same-init students' updates planted well above the controls' (both seeds), and not
    ("update_alignment", _set_update_cosines([0.30, 0.34], [0.01, 0.03]), True),
    ("update_alignment", _set_update_cosines([0.02, 0.01], [0.01, 0.02]), False),
    # a detector that separates every target's data, and one at chance
    ("detection", _set_aurocs({"owl": 0.90, "cat": 0.93, "fox": 0.88}), True),
    ("detection", _set_aurocs({"owl": 0.52, "cat": 0.47, "fox": 0.50}), False),
])  # fmt: skip
def test_a_planted_effect_is_found_and_an_absent_one_is_not(runs, tmp_path, script, edit, supported):
    run = _planted(runs["subliminal"], tmp_path / "planted", edit)
    rc, out = run_script(script, str(run))
    assert rc == 0 and (parse(out)["result"] == "supported") == supported, out


def test_transmission_finds_the_planted_matrix_arm_and_not_the_null_one(runs, tmp_path):
    """The synthetic trait matrix of report_runs: arm distill-full has a planted own-target shift
    of 0.8 nats (3 seeds), arm sft none; gamma's interval is the t formula over the seeds."""
    from report_runs import matrix_run

    run = matrix_run(runs["subliminal"], tmp_path / "matrix")
    arms = json.loads((run / "summary.json").read_text())["matrix"]["arms"]
    for arm, expect in (("distill-full", "supported"), ("sft", None)):
        m = parse(run_script("transmission", str(run), "--arm", arm)[1])
        g = np.array(arms[arm]["gamma_per_seed"])
        half = stats.t.ppf(0.975, g.size - 1) * g.std(ddof=1) / np.sqrt(g.size)
        assert float(m["lo"]) == pytest.approx(g.mean() - half, rel=2e-3)
        assert float(m["hi"]) == pytest.approx(g.mean() + half, rel=2e-3)
        assert (m["result"] == "supported") == (expect == "supported"), (arm, m.string)


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
