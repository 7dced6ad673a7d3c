"""Integration tier: `runs/quickstart.toml` itself (real SmolLM2 and Gemma-3, finetuned teachers,
analyses, PDF), shrunk with --set so it takes minutes; then every analyses/ script on that run
directory, with its verdict line parsed."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from pypdf import PdfReader
from test_analyses_scripts import SCRIPTS, parse, run_script

from interp.cli import main

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHRINK = [
    "teacher.answers_per_prompt=1", "teacher.answer_max_new_tokens=32", "teacher.epochs=2", "teacher.cross_epochs=1",
    "data.n_prompts=8", "data.n_keep=8", "data.max_new_tokens=24", "data.batch_size=8",
    "eval.n_questions=6", "eval.samples_per_question=2", "eval.batch_size=24",
    "analysis.n_prompts=10", "analysis.n_number_prompts=2", "analysis.gradient_batches=1",
    "analysis.gradient_batch_size=4", "analysis.n_boot=200",
]  # fmt: skip


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qs")
    argv = ["run", str(ROOT / "runs" / "quickstart.toml"), "--out-dir", str(tmp)]
    for item in SHRINK:
        argv += ["--set", item]
    cwd = Path.cwd()
    try:
        import os

        os.chdir(tmp)  # the PDF goes to ./reports/quickstart.pdf
        assert main(argv) == 0
    finally:
        os.chdir(cwd)
    return tmp


def test_quickstart_produces_summary_analysis_and_pdf(quickstart_run):
    run = quickstart_run / "quickstart"
    s = json.loads((run / "summary.json").read_text())
    assert {
        "base",
        "teacher",
        "prompted-teacher",
        "base:gemma3-270m",
        "teacher:gemma3-270m",
    } <= set(s["models"])
    lp = {k: v["logprob"]["mean"] for k, v in s["models"].items()}
    assert lp["prompted-teacher"] > 2 * lp["base"], lp  # the stimulus works on the real model
    a = json.loads((run / "analysis.json").read_text())
    # every section but the opt-in ones (off in the quickstart: they add minutes) and the
    # controls table and the update matrix, which need >= 2 targets; each stated with its reason
    opt_in = {"entanglement", "divergence", "detection", "incontext", "trajectories", "first_order"}
    assert set(a["missing"]) == opt_in | {"data_controls", "update_matrix"}, a["missing"]
    assert "needs >= 2 targets" in a["missing"]["update_matrix"]
    assert all(a["missing"][k].startswith("off; set [analysis]") for k in opt_in)
    assert {r["metric"] for r in a["table"]} >= {"update cos(dS, dT), mean over seeds", "share of dS in span(dT) (chance)"}
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(quickstart_run / "reports" / "quickstart.pdf").pages))
    assert "Detection: not computed for this run (reason: off; set [analysis] detection = true)" in text
    pdf = quickstart_run / "reports" / "quickstart.pdf"
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    named = tomllib.loads((run / "config.toml").read_text())["report"]["figures"]
    assert named and all(re.search(rf"Figure \d+ \({fig}\)", text) for fig in named), named


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_hypothesis_script_on_the_quickstart_run(quickstart_run, script):
    rc, out = run_script(script, str(quickstart_run / "quickstart"))
    assert rc == 0, out
    m = parse(out)
    assert m["id"] == SCRIPTS[script]
    # the MLP script cannot test a subliminal run, nor the transmission script a one-target
    # run (it needs a trait x student matrix); the others can
    opt_in = {"entanglement", "detection", "data_controls", "incontext", "first_order"}  # sections off in the quickstart
    assert (m["result"] == "not testable") == (script in {"mlp_theorem", "transmission"} | opt_in), out
