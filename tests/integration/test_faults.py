"""Kill `interp run` at random moments and inside every stage kind, kill `interp analyze` and
`interp report`, damage artifacts, run two at once: the same results.

Each case runs the tiny-model subliminal config in subprocesses (SIGKILL needs a process of
its own) and compares the final summary.json with an uninterrupted run's, provenance (times,
which stages were cached) and the run folder's path left out. A kill inside a given stage kind
uses the store's hook (`INTERP_KILL_AT`, `interp.store.locks.fault_point`): the process kills
itself once that stage's files are written and before its manifest is, or once a named file is
written under its temporary name and before the rename. A sweep point is killed in
tests/integration/test_sweep.py. `make test` runs a short version of the random kills;
`pytest -m slow tests/integration/test_faults.py` the acceptance one (12 kills, 10 damages).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.store.runfolder import config_key

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "INTERP_THREADS": "1"}


# `interp analyze` over the tiny run in a few seconds (the default sections, small sizes)
ANALYSIS = {"enabled": False, "n_prompts": 4, "n_number_prompts": 2, "gradient_batches": 1,
            "gradient_batch_size": 2, "n_boot": 50, "backend": "hf"}  # fmt: skip


def _cfg(tmp: Path, seed: int = 0) -> Path:
    cfg = tiny_subliminal_config(seed=seed)
    cfg["students"] = cfg["students"][:2]  # same-init + control: enough stages, half the time
    cfg["analysis"] = ANALYSIS
    tmp.mkdir(parents=True, exist_ok=True)
    return write_config(tmp, cfg, name="faults")  # the run's name: faults


def _cli(*args: str, kill_at: str | None = None) -> subprocess.Popen:
    env = ENV if kill_at is None else {**ENV, "INTERP_KILL_AT": kill_at}
    return subprocess.Popen([sys.executable, "-m", "interp.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def _start(cfg: Path, out: Path, kill_at: str | None = None) -> subprocess.Popen:
    return _cli("run", str(cfg), "--out-dir", str(out), kill_at=kill_at)


def _killed(p: subprocess.Popen, where: str) -> str:
    """The stderr of a process that killed itself at `where` (asserted)."""
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL, stderr[-3000:]
    assert f"killing this process at {where}" in stderr, stderr[-3000:]
    return stderr


def _finish(cfg: Path, out: Path) -> str:
    p = _start(cfg, out)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    return stdout


def _canonical(out: Path) -> str:
    s = json.loads((out / "faults" / "summary.json").read_text())
    s.pop("provenance")
    return json.dumps(s, sort_keys=True).replace(str(out), "<out>")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _cfg(tmp)
    t0 = time.time()
    _finish(cfg, tmp / "out")
    return cfg, _canonical(tmp / "out"), time.time() - t0, tmp / "out" / "faults"


def _damage(run: Path, rng: random.Random) -> str:
    files = sorted(p for p in (run / "stages").glob("*/*")
                   if p.is_file() and p.name != "manifest.json" and not p.parent.name.endswith(".partial"))
    if not files:
        return "nothing to damage yet"
    f = rng.choice(files)
    data = bytearray(f.read_bytes())
    if rng.random() < 0.5 or not data:
        f.write_bytes(bytes(data[: len(data) // 2]))
        return f"truncated {f.parent.name}/{f.name}"
    i = rng.randrange(len(data))
    data[i] ^= 0x20
    f.write_bytes(bytes(data))
    return f"flipped a byte of {f.parent.name}/{f.name}"


def _kill_and_rerun(reference, tmp: Path, n_kills: int, n_damages: int, seed: int) -> list[str]:
    """SIGKILL `n_kills` runs mid-way (a run that finished before its moment is checked against
    the reference and started afresh), damage `n_damages` artifacts in between, then finish."""
    cfg, expected, wall, _ = reference
    out, rng, log = tmp / "out", random.Random(seed), []
    kills = damages = tries = 0
    while (kills < n_kills or damages < n_damages) and tries < 4 * max(n_kills, n_damages):
        tries += 1
        if kills < n_kills:
            p = _start(cfg, out)
            moment = rng.uniform(0.2, wall)
            time.sleep(moment)
            p.send_signal(signal.SIGKILL)
            stderr = p.communicate()[1]
            if p.returncode == -signal.SIGKILL:
                kills += 1
                log.append(f"killed at {moment:.1f}s")
            else:  # it finished first: it must agree, then start over so kills land mid-run
                assert p.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
                assert _canonical(out) == expected, log
                log.append(f"finished before {moment:.1f}s: summary identical; starting afresh")
                shutil.rmtree(out)
        if damages < n_damages:
            if kills >= n_kills and not list((out / "faults" / "stages").glob("*/*")):
                _finish(cfg, out)  # no run this round: give the damage something to hit
            what = _damage(out / "faults", rng)
            damages += what.startswith(("truncated", "flipped"))
            log.append(what)
    assert kills == n_kills and damages == n_damages, log
    _finish(cfg, out)
    assert _canonical(out) == expected, log
    return log


def test_killed_and_damaged_runs_end_with_the_uninterrupted_summary(reference, tmp_path):
    _kill_and_rerun(reference, tmp_path, n_kills=2, n_damages=2, seed=0)


@pytest.mark.slow
def test_twelve_kills_and_ten_damages(reference, tmp_path):
    log = _kill_and_rerun(reference, tmp_path, n_kills=12, n_damages=10, seed=1)
    print("\n".join(log))


def test_two_concurrent_runs_of_one_config_agree(reference, tmp_path):
    cfg, expected, _, _ = reference
    out = tmp_path / "out"
    a, b = _start(cfg, out), _start(cfg, out)
    (oa, ea), (ob, eb) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (ea[-2000:], eb[-2000:])
    assert "Traceback" not in ea + eb
    table = lambda o: o[o.index("\nmodel ") :].split("\nsummary:")[0]  # noqa: E731
    assert table(oa) == table(ob)
    assert _canonical(out) == expected


def test_a_kill_inside_each_stage_kind_resumes_to_the_uninterrupted_summary(reference, tmp_path):
    """generate, filter, train (the student stages), eval: one kill inside each, in run order on
    one folder, each leaving its stage unfinished (files, no manifest); then the run finishes."""
    cfg, expected, _, _ = reference
    out = tmp_path / "out"
    stages = out / "faults" / "stages"
    for kind in ("generate", "filter", "student", "eval"):
        err = _killed(_start(cfg, out, kill_at=f"stage:{kind}/"), f"stage:{kind}/")
        half = sorted(stages.glob(f"{kind}__*.partial"))
        assert half, (kind, err[-2000:])
        assert not (half[0] / "manifest.json").exists() and any(half[0].iterdir())  # files, no manifest
        assert not stages.joinpath(half[0].name.removesuffix(".partial")).exists()
        assert not (out / "faults" / "summary.json").exists()
    _finish(cfg, out)
    assert _canonical(out) == expected


def _canonical_analysis(run: Path) -> str:
    a = json.loads((run / "analysis.json").read_text())
    a.pop("provenance")
    return json.dumps(a, sort_keys=True).replace(str(run.parent), "<out>")


def _pdf_content(pdf: Path) -> bytes:
    """The PDF without its creation/modification dates and file ID (all else must agree)."""
    return re.sub(rb"/(CreationDate|ModDate) \(D:[^)]*\)|/ID\s*\n?\[[^\]]*\]", b"", pdf.read_bytes())


def _ok(p: subprocess.Popen) -> None:
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]


def test_a_kill_inside_analyze_and_report_resumes_to_the_same_outputs(reference, tmp_path):
    *_, ref_run = reference
    run = tmp_path / "out" / "faults"  # one path for both analyses (analysis.json names it)
    shutil.copytree(ref_run, run)
    _ok(_cli("analyze", str(run)))
    clean_analysis = _canonical_analysis(run)
    shutil.rmtree(run)
    shutil.copytree(ref_run, run)
    # analyze: killed inside a recording stage, then just before analysis.json lands
    _killed(_cli("analyze", str(run), kill_at="stage:record/"), "stage:record/")
    assert sorted((run / "stages").glob("record__*.partial")) and not (run / "analysis.json").exists()
    _killed(_cli("analyze", str(run), kill_at="file:analysis.json"), "file:analysis.json")
    assert not (run / "analysis.json").exists()
    _ok(_cli("analyze", str(run)))
    assert _canonical_analysis(run) == clean_analysis
    # report: killed with the whole PDF written under its temporary name, before the rename; the
    # rerun's PDF is the uninterrupted one's (of this run: the PDF shows its stages' wall times)
    pdf = tmp_path / "report.pdf"
    _ok(_cli("report", str(run), "-o", str(pdf)))
    clean_pdf = _pdf_content(pdf)
    pdf.unlink()
    _killed(_cli("report", str(run), "-o", str(pdf), kill_at="file:report.pdf"), "file:report.pdf")
    assert not pdf.exists()
    _ok(_cli("report", str(run), "-o", str(pdf)))
    assert pdf.read_bytes()[:5] == b"%PDF-" and _pdf_content(pdf) == clean_pdf


def test_two_different_configs_started_at_once_on_one_folder_both_keep_their_summaries(reference, tmp_path):
    cfg, expected, _, _ = reference
    other = _cfg(tmp_path / "other", seed=1)  # another config with the same run name
    out = tmp_path / "out"
    a, b = _start(cfg, out), _start(other, out)
    for p in (a, b):
        _ok(p)
    root = out / "faults"
    kept = {}
    for f in [root / "summary.json", *root.glob("superseded/*/summary.json")]:
        s = json.loads(f.read_text()) if f.exists() else None
        if s is not None:
            assert s["config_key"] == config_key((f.parent / "config.toml").read_text()), f  # beside its config
            kept[s["provenance"]["seed"]] = f
    assert sorted(kept) == [0, 1], kept
    got = json.loads(kept[0].read_text())  # the seed-0 summary is the uninterrupted run's, wherever it is
    got.pop("provenance")
    assert json.dumps(got, sort_keys=True).replace(str(out), "<out>") == expected


@pytest.mark.parametrize("damage", ["truncate", "edit"])
@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_truncated_or_edited_stage_file_is_refused_by_analyze_and_report(reference, tmp_path, capsys, damage,
                                                                          command):  # fmt: skip
    from interp.cli import main

    *_, ref_run = reference
    run = tmp_path / "faults"
    shutil.copytree(ref_run, run)
    (data,) = sorted(run.glob("stages/filter__trait__*/dataset.jsonl"))  # what every student is trained on
    raw = data.read_bytes()
    if damage == "truncate":  # on a line boundary: rows silently missing without the check
        data.write_bytes(raw[: raw.rindex(b"\n", 0, len(raw) - 1) + 1])
    else:  # same size, one digit changed
        i = next(i for i, c in enumerate(raw) if chr(c).isdigit())
        data.write_bytes(raw[:i] + (b"1" if raw[i : i + 1] != b"1" else b"2") + raw[i + 1 :])
    pdf = tmp_path / "r.pdf"
    args = ["analyze", str(run)] if command == "analyze" else ["report", str(run), "-o", str(pdf)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and data.parent.name in err[0] and "dataset.jsonl" in err[0], err
    assert ("size" in err[0]) if damage == "truncate" else ("sha256" in err[0])
    assert not (run / "analysis.json").exists() and not pdf.exists()  # refused before any work
