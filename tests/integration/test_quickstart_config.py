"""`runs/quickstart.toml` (what `make demo` runs) wired end to end on tiny models: the config's own
targets, students, analysis and report, with the embedded models swapped for tiny random ones and
the sizes shrunk, so it takes seconds. One teacher per target, a control teacher, a same-init
and a cross-model student per target and a control student; the matrix section and page 1 of
the PDF read them; every hypothesis script runs on the folder."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
from pypdf import PdfReader
from test_analyses_scripts import SCRIPTS, parse, run_script

from interp.cli import main
from interp.config import dumps_toml
from interp.fmt import fmt

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "runs" / "quickstart.toml").read_text())
TINY = {"smollm2-135m-instruct": "tiny-llama", "gemma3-270m": "tiny-gemma"}


def tiny_quickstart() -> dict:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["name"] = "quickstart"
    cfg["teacher"]["model"] = TINY[cfg["teacher"]["model"]]
    for s in cfg["students"]:
        if s.get("model", "teacher") != "teacher":
            s["model"] = TINY[s["model"]]
    cfg["data"] |= {"n_prompts": 6, "n_keep": 4, "max_new_tokens": 12, "batch_size": 6}
    cfg["train"] |= {"batch_size": 2, "micro_batch_size": 2}
    cfg["eval"] |= {"n_questions": 4, "samples_per_question": 2, "batch_size": 16, "bootstrap": 100}
    cfg["analysis"] |= {"n_answer_rows": 10}
    return cfg


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qs")
    path = tmp / "quickstart.toml"
    path.write_text(dumps_toml(tiny_quickstart()))
    cwd = Path.cwd()
    try:
        os.chdir(tmp)  # the PDF goes to ./reports/quickstart.pdf
        assert main(["run", str(path), "--out-dir", str(tmp)]) == 0
    finally:
        os.chdir(cwd)
    return tmp


def test_the_quickstart_is_a_trait_matrix_with_control_and_cross_model_arms(quickstart_run):
    targets = CONFIG["trait"]["targets"]
    assert len(targets) >= 6  # the permutation test reaches p = 1/720 only with six targets
    run = quickstart_run / "quickstart"
    s = json.loads((run / "summary.json").read_text())
    art = s["artifacts"]
    # one prompted teacher per target, each with its own system prompt naming its animal
    assert sorted(art["teachers"]) == sorted(targets)
    assert all(t in art["teachers"][t]["system"].lower() for t in targets)
    assert art["control_teacher"]["system"] and not any(t in art["control_teacher"]["system"].lower() for t in targets)
    # a same-init and a cross-model student per target, each trained on its own target's data;
    # the control student on the control teacher's data
    by_t = art["students_by_target"]
    arms = {s["name"]: s for s in CONFIG["students"]}
    for name, spec in arms.items():
        expected = ["control"] if spec.get("data") == "control" else targets
        assert sorted(by_t[name]) == sorted(expected), name
    cross = next(n for n, spec in arms.items() if spec.get("model", "teacher") != "teacher")
    same = next(n for n, spec in arms.items() if spec.get("model", "teacher") == "teacher" and spec.get("data") != "control")
    for t in targets:
        for name in (same, cross):
            st = run / by_t[name][t]["0"]
            data_key = json.loads((st / "manifest.json").read_text())["inputs"]["data"]
            want = art["data"]["trait" if t == targets[0] else f"trait:{t}"]
            assert want.endswith(data_key), (name, t)
    # the matrix reads both trait arms over every target, with gamma, p and the control difference
    m = s["matrix"]
    assert m["targets"] == targets and set(m["arms"]) == {same, cross}
    assert m["arms"][cross]["model"] == TINY["gemma3-270m"] and m["arms"][same]["model"] == TINY["smollm2-135m-instruct"]
    for a in m["arms"].values():
        assert a["gamma"] is not None and 0 < a["p_gamma"] <= 1 and len(a["shifts"]) == len(targets)
    assert "did_vs_control" in m["arms"][same]
    # the mechanism section reads the arms the config names, with the same base's control student
    mech = json.loads((run / "analysis.json").read_text())["matrix_mechanisms"]
    control = next(n for n, spec in arms.items() if spec.get("data") == "control")
    assert set(mech["arms"]) == set(CONFIG["analysis"]["arms"]) | {control}, mech["arms"].keys()
    d = mech["arms"][same]["direction"]
    assert len(d["gamma_by_layer"]) >= 2 and 0 < d["p"] <= 1 and d["n_permutations"] == 720  # exact over six targets


def test_page_one_states_the_three_contrasts(quickstart_run):
    first = re.sub(r"\s+", " ", PdfReader(quickstart_run / "reports" / "quickstart.pdf").pages[0].extract_text())
    assert "same-init student" in first and "cross-model student" in first and "control" in first.lower()
    s = json.loads((quickstart_run / "quickstart" / "summary.json").read_text())
    for a in s["matrix"]["arms"].values():  # each arm's gamma and p as the report formats numbers
        assert f"gamma = {fmt(a['gamma'])} nats" in first and f"p = {fmt(a['p_gamma'])}" in first, first[:900]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_hypothesis_script_on_the_quickstart_run(quickstart_run, script):
    rc, out = run_script(script, str(quickstart_run / "quickstart"))
    assert rc == 0, out
    m = parse(out)
    assert m["id"] == SCRIPTS[script]
    # testable here: the transmission matrix (six targets) and the shared-init contrast; the MLP
    # script needs an MLP run, the rest need sections the quickstart leaves off or a finetuned teacher
    testable = {"transmission", "shared_init_required"}
    assert (m["result"] != "not testable") == (script in testable), out
