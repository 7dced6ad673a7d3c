"""The runner: stages are cached by key, a killed run resumes, summaries are complete."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import tiny_subliminal_config, write_config

import interp.subliminal.jobs as jobs
import interp.subliminal.stages as pipeline
from interp.cli import main
from interp.store.stages import RunDir


class Killed(KeyboardInterrupt):
    pass


def _count(monkeypatch, name, module=pipeline):
    calls = {"n": 0}
    real = getattr(module, name)

    def wrapper(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_killed_run_resumes_without_recomputing(tmp_path, monkeypatch, capsys):
    # students one at a time (stack_rows = 0), so that one can die after another finished
    path = write_config(tmp_path, tiny_subliminal_config(train__stack_rows=0))
    out = tmp_path / "runs"
    real_finetune = jobs.finetune
    trained = []

    def dying_finetune(model, tok, examples, settings, **kw):
        if len(trained) == 1:  # the second student is killed mid-training
            raise Killed()
        trained.append(1)
        return real_finetune(model, tok, examples, settings, **kw)

    monkeypatch.setattr(jobs, "finetune", dying_finetune)
    assert main(["run", str(path), "--out-dir", str(out)]) == 130
    stages = out / "tiny" / "stages"
    done = sorted(
        p.name.rsplit("-", 1)[0] for p in stages.iterdir() if (p / "manifest.json").exists()
    )
    assert "student__same-init__owl__seed0" in done and not (out / "tiny" / "summary.json").exists()
    assert not list(
        stages.glob("student__control*/manifest.json")
    )  # the killed stage is not "done"
    first_manifests = {p.name: p.read_text() for p in stages.glob("*/manifest.json")}

    monkeypatch.setattr(jobs, "finetune", real_finetune)
    sampled = _count(monkeypatch, "sample")
    tuned = _count(monkeypatch, "finetune", jobs)
    assert main(["run", str(path), "--out-dir", str(out)]) == 0
    assert sampled["n"] == 0, "teacher data was regenerated"
    assert tuned["n"] == 2, "only the two unfinished students should train"
    for p in stages.glob("*/manifest.json"):  # finished stages untouched
        if p.parent.name in first_manifests:
            assert p.read_text() == first_manifests[p.parent.name]
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    prov = summary["provenance"]
    assert (
        "generate/trait/owl" in prov["stages_cached"]
        and "student/same-init/owl/seed0" in prov["stages_cached"]
    )

    # A third run recomputes nothing at all.
    tuned["n"] = 0
    assert main(["run", str(path), "--out-dir", str(out)]) == 0
    assert tuned["n"] == 0 and sampled["n"] == 0


def test_stacked_students_killed_together_resume_together(tmp_path, monkeypatch):
    """Two same-base students train stacked (one finetune_group call); killed mid-group, neither
    stage counts as done, and the rerun trains both in one group, the cross-model one alone."""
    path = write_config(tmp_path, tiny_subliminal_config())
    real_group = jobs.finetune_group

    def dying_group(*a, **k):
        raise Killed()

    monkeypatch.setattr(jobs, "finetune_group", dying_group)
    assert main(["run", str(path), "--out-dir", str(tmp_path)]) == 130
    assert not list((tmp_path / "tiny" / "stages").glob("student__*/manifest.json"))
    monkeypatch.setattr(jobs, "finetune_group", real_group)
    groups, alone = _count(monkeypatch, "finetune_group", jobs), _count(monkeypatch, "finetune", jobs)
    assert main(["run", str(path), "--out-dir", str(tmp_path)]) == 0
    assert groups["n"] == 1 and alone["n"] == 1
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "tiny" / "stages").glob("student__*/manifest.json")]
    assert sorted(m.get("notes", {}).get("stacked", {}).get("students", 1) for m in manifests) == [1, 2, 2]


def test_summary_has_every_model_with_both_metrics(tmp_path):
    cfg = tiny_subliminal_config(train__seeds=[0, 1])
    cfg["students"] = cfg["students"][:2]
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    assert set(s["models"]) == {
        "base",
        "teacher",
        "same-init/seed0",
        "same-init/seed1",
        "control/seed0",
        "control/seed1",
    }
    for label, m in s["models"].items():  # each model's score is the mean over its eval's questions
        ev = json.loads((tmp_path / "tiny" / s["artifacts"]["evals"][label] / "eval.json").read_text())
        for metric in ("trait_rate", "logprob"):
            per_q = ev[metric]["per_question"]
            assert m[metric]["mean"] == pytest.approx(np.mean(per_q)) and m[metric]["n"] == len(per_q) == 3
    for name in ("same-init", "control"):  # seeds: a t-interval over the seeds' means, by the formula
        agg = s["students"][name]["logprob"]
        per_seed = [s["models"][f"{name}/seed{k}"]["logprob"]["mean"] for k in (0, 1)]
        half = 12.706204736174694 * np.std(per_seed, ddof=1) / np.sqrt(2)  # t(0.975, df=1)
        assert agg["per_seed"] == per_seed and agg["n"] == 2
        assert (agg["mean"], agg["lo"], agg["hi"]) == pytest.approx((np.mean(per_seed), np.mean(per_seed) - half,
                                                                    np.mean(per_seed) + half))
        assert half > 0  # the two seeds differ: a real interval
    f = s["filter"]["trait"]  # the counts add up, and the dataset's shape is what its file holds
    assert f["total"] == 12 and f["kept"] + sum(f["rejected"].values()) == 12 and f["pass_rate"] == f["kept"] / 12
    rows = (tmp_path / "tiny" / s["artifacts"]["data"]["trait"] / "dataset.jsonl").read_text().splitlines()
    numbers = [len(re.findall(r"\d+", json.loads(r)["completion"])) for r in rows]
    assert f["n_dataset"] == len(rows) and f["dataset_shape"]["mean_numbers"] == pytest.approx(np.mean(numbers))
    prov = s["provenance"]
    assert prov["seed"] == 0 and "torch" in prov["versions"] and prov["stage_wall_s"]
    assert (tmp_path / "tiny" / "config.toml").read_text().startswith('name = "tiny"')
    manifest = json.loads(
        next((tmp_path / "tiny" / "stages").glob("student__*/manifest.json")).read_text()
    )
    assert {"params", "seed", "versions", "wall_s", "checksums", "git_commit"} <= set(manifest)
    assert "delta.safetensors" in manifest["checksums"]


def test_changed_upstream_param_changes_downstream_keys(tmp_path):
    run = RunDir(tmp_path)
    a = run.stage("generate/trait", {"n": 1})
    b = run.stage("filter/trait", {"k": 2}, {"generate": a})
    a2 = run.stage("generate/trait", {"n": 2})
    b2 = run.stage("filter/trait", {"k": 2}, {"generate": a2})
    assert a.key != a2.key and b.key != b2.key
    assert run.stage("filter/trait", {"k": 2}, {"generate": a}).key == b.key


def test_stage_failure_leaves_no_finished_stage(tmp_path):
    run = RunDir(tmp_path)
    st = run.stage("x", {"a": 1})
    with pytest.raises(RuntimeError):
        with st.running() as out:
            (out / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert not st.done
    with st.running() as out:
        (out / "full.txt").write_text("ok")
    assert st.done and (st.path / "full.txt").exists() and not (st.path / "half.txt").exists()


def test_distill_cross_tokenizer_is_a_clear_error(tmp_path, capsys):
    cfg = tiny_subliminal_config(train__objective="distill")
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "distill_vocab = 'numbers'" in err and "cross-model" in err
    assert not (tmp_path / "tiny").exists()  # refused before any file was written


def test_each_base_is_read_once_per_process_and_deltas_are_factors(tmp_path):
    from interp.lm import models

    models.clear_model_cache()
    models.LOADS.clear()
    cfg = tiny_subliminal_config(train__seeds=[0, 1])
    cfg["teacher"] |= {"mode": "finetuned", "answer_filter": "none", "answers_per_prompt": 1, "epochs": 1}
    assert main(["run", str(write_config(tmp_path, cfg)), "--out-dir", str(tmp_path)]) == 0
    # teacher answers, 2 finetuned teachers, 2 datasets, 6 students, 10 evals: one read per base
    assert models.LOADS == {"tiny-llama": 1, "tiny-gemma": 1}
    stages = tmp_path / "tiny" / "stages"
    delta = next(stages.glob("student__same-init__owl__seed0-*")) / "delta.safetensors"
    from safetensors import safe_open

    with safe_open(str(delta), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.endswith(("::A", "::B")) for k in keys)  # LoRA factors, not merged matrices


def test_a_dataset_short_of_n_keep_is_said_loudly(tmp_path, capsys):
    cfg = tiny_subliminal_config(data__n_keep=40)  # 12 prompts cannot give 40 examples
    cfg["students"] = cfg["students"][:1]
    path = write_config(tmp_path, cfg)
    for _ in range(2):  # computed, then cached: said both times
        capsys.readouterr()
        assert main(["run", str(path), "--out-dir", str(tmp_path)]) == 0
        short = [line for line in capsys.readouterr().err.splitlines() if "not data.n_keep = 40" in line]
        assert len(short) == 1 and "data trait/owl: 11 examples" in short[0], short  # one dataset: same-init only
        assert all("completions passed the filter" in m and "data.n_prompts" in m for m in short)
