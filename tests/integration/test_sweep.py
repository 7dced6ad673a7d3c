"""`interp sweep` / `interp plan` on tiny models: a 2x2 grid (target x seed; the seed axis takes list
values). Four points, not eight: each engine runs the whole grid, and the suite has 10 minutes.

- the sweep file is checked before anything runs (one line naming file, field and value);
- `local` runs it; each shared stage (the control data and control students, which do not
  depend on the target; each target's data, shared over seeds) is computed once and
  used by several points;
- a point that fails is recorded (its error line, its log) while the others finish; sweep.json
  lists it, `interp sweep` exits 1 naming it, and the rerun runs only it;
- a sweep killed (SIGKILL) inside a point's training resumes to the same summaries;
- `ray` (a local Ray, 2 CPU workers) is started in a subprocess, one of its workers is killed
  with SIGKILL while it runs a task (no retries, so that point fails and the others finish), and
  the rerun completes with summaries identical to the local engine's;
- submitit's local executor runs the same sweep to the same summaries.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

from interp.config import ConfigError
from interp.sweep import build_graph, load_sweep, plan, run_sweep

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "INTERP_THREADS": "1"}

GRID = """base = "base.toml"
[axes]
"trait.target" = ["owl", "fox"]
"train.seeds" = [[0], [1]]
[resources]
cpus = 1
"""


def _files(tmp: Path, grid: str = GRID) -> Path:
    cfg = tiny_subliminal_config()
    cfg["students"] = cfg["students"][:2]  # same-init + control
    write_config(tmp, cfg, name="base")
    (tmp / "grid.toml").write_text(grid)
    return tmp / "grid.toml"


def _canonical(out: Path) -> dict[str, str]:
    """Each point's summary without provenance and paths, and the sweep's table."""
    root = out / "grid"
    res = {}
    for d in sorted((root / "points").iterdir()):
        s = json.loads((d / "summary.json").read_text())
        s.pop("provenance")
        res[d.name] = json.dumps(s, sort_keys=True).replace(str(out), "<out>")
    sweep = json.loads((root / "sweep.json").read_text())
    res["table"] = json.dumps([sweep["table"], sweep["target_matrices"]], sort_keys=True)
    return res


@pytest.fixture(scope="module")
def local(tmp_path_factory, monkeypatch_module):
    tmp = tmp_path_factory.mktemp("sweep")
    path = _files(tmp)
    result = run_sweep(load_sweep(path), engine="local", out_dir=tmp / "local")
    return path, tmp, result


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_THREADS", "1")  # what every engine's worker uses (resources.cpus = 1)
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield mp
    mp.undo()


@pytest.mark.parametrize(("text", "expected"), [
    ('base = "base.toml"\n[axes]\n"train.lr" = [2.0]\n', r"grid.toml: point p000 \(train.lr=2.0\): .*train.lr.*2.0"),
    ('base = "base.toml"\n[axes]\n"train.nope" = [1]\n', r"grid.toml: point p000 .*nope"),
    ('base = "base.toml"\n[axes]\n"train.lr" = 1e-3\n', r"grid.toml: field 'axes.\"train.lr\"' has value 0.001; expected a non-empty list"),
    ('base = "missing.toml"\n[axes]\n"train.lr" = [1e-3]\n', r"grid.toml: field 'base' has value 'missing.toml': .* does not exist"),
    ('base = "base.toml"\naxis = 1\n[axes]\n"train.lr" = [1e-3]\n', r"grid.toml: unknown field 'axis'"),
    ('base = "base.toml"\n[axes]\n"train.lr" = [1e-3, 1e-3]\n', r"a value is repeated"),
    ('base = "base.toml"\n[resources]\ngpus = -1\n[axes]\n"train.lr" = [1e-3]\n', r"'resources.gpus' has value -1"),
])  # fmt: skip
def test_bad_sweep_file_is_one_line_before_anything_is_written(tmp_path, text, expected):
    path = _files(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as e:
        load_sweep(path)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.toml", "grid.toml"]


def test_graph_has_one_data_task_per_data_identity(tmp_path):
    sw = load_sweep(_files(tmp_path))
    tasks = build_graph(sw)
    data = [t for t in tasks if t.kind == "data"]
    # the data do not depend on the seed: one data task per target, each needed by 2 points
    assert sorted(len(t.points) for t in data) == [2, 2]
    runs = [t for t in tasks if t.kind == "run"]
    assert len(runs) == 4 and all(len(t.deps) == 1 and t.deps[0] in {d.id for d in data} for t in runs)
    assert [t.kind for t in tasks].index("run") == len(data)  # dependencies come first


def test_local_sweep_computes_each_shared_stage_once(local):
    path, tmp, result = local
    run = result["run"]
    assert run["computed_twice"] == []
    computed = [s for r in run["task_results"] for s in r["computed"]]
    stages = sorted(p.name for p in (tmp / "local" / "grid" / "stages").iterdir() if not p.name.startswith("."))
    assert sorted(computed) == stages  # every stored stage computed by exactly one task
    users: dict[str, set[str]] = {}
    for r in run["task_results"]:
        if r["task"].startswith("run-"):
            for s in r["used"]:
                users.setdefault(s, set()).add(r["point"])
    control = [s for s in users if s.startswith("student__control__")]
    assert len(control) == 2 and all(len(users[s]) == 2 for s in control)  # one per seed, shared by owl and fox
    trait_data = [s for s in users if s.startswith("filter__trait__")]
    assert len(trait_data) == 2 and all(len(users[s]) == 2 for s in trait_data)
    assert run["stages_shared"] == sum(1 for u in users.values() if len(u) > 1)
    assert len(result["table"]) == 8 and not result["missing"]  # 4 points x 2 students
    assert len(result["target_matrices"]) == 2 and all("same-init" in m["arms"] for m in result["target_matrices"])
    assert (tmp / "local" / "grid" / "sweep.pdf").read_bytes()[:5] == b"%PDF-"
    rows = plan(load_sweep(path), tmp / "local", "local")
    assert {r["state"] for r in rows} == {"cached"}


def _sweep_cmd(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "interp.cli", "sweep", str(path), "--out-dir", str(out), *extra]


def test_ray_worker_killed_mid_task_then_rerun_gives_the_local_summaries(local):
    pytest.importorskip("ray")
    path, tmp, _ = local
    out = tmp / "ray"
    p = subprocess.Popen(_sweep_cmd(path, out, "--engine", "ray", "--retries", "0"), env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and p.poll() is None:
        # a run task is mid-way once its point's first student stage is stored
        if any((out / "grid" / "stages").glob("student__*")) if (out / "grid" / "stages").is_dir() else False:
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            hits = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+) ray::interp:run-", ps, re.M)]
            if hits:
                os.kill(hits[0], signal.SIGKILL)
                killed = hits[0]
        time.sleep(0.2)
    log = p.communicate(timeout=300)[0]
    assert killed is not None, log[-3000:]
    assert p.returncode == 1 and "points failed" in log, log[-3000:]  # no retries: the killed task's point fails
    failed = json.loads((out / "grid" / "sweep.json").read_text())["failed"]  # the others are in sweep.json
    assert failed and all(f["task"].startswith("run-") for f in failed.values()), failed
    rerun = subprocess.run(_sweep_cmd(path, out, "--engine", "ray"), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _canonical(out) == _canonical(tmp / "local")


def test_submitit_local_executor_gives_the_local_summaries(local):
    pytest.importorskip("submitit")
    path, tmp, _ = local
    res = subprocess.run(_sweep_cmd(path, tmp / "slurm", "--engine", "slurm", "--cluster", "local"), env=ENV,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert _canonical(tmp / "slurm") == _canonical(tmp / "local")
    assert list((tmp / "slurm" / "grid" / "submitit").iterdir())  # the jobs' logs are there


def test_a_failing_point_is_recorded_the_others_finish_and_the_rerun_retries_only_it(local, monkeypatch, capsys):
    from interp.cli import main
    from interp.sweep import engines

    path, tmp, _ = local
    out = tmp / "failing"
    real, ran, state = engines.execute, [], {"fail": True}

    def execute(payload, *after):
        ran.append(payload["task"])
        if state["fail"] and payload["task"] == "run-p001":
            raise RuntimeError("injected failure of p001")
        return real(payload, *after)

    monkeypatch.setattr(engines, "execute", execute)
    assert main(["sweep", str(path), "--out-dir", str(out)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("interp: error: sweep grid: 1 of 4 points failed: p001 (RuntimeError: injected failure of p001; log ")
    root = out / "grid"
    sweep = json.loads((root / "sweep.json").read_text())
    assert list(sweep["failed"]) == ["p001"] and list(sweep["missing"]) == ["p001"]
    assert sweep["failed"]["p001"]["log"] == str(root / "logs" / "run-p001.log")
    assert "injected failure of p001" in Path(sweep["failed"]["p001"]["log"]).read_text()
    assert sorted({r["point"] for r in sweep["table"]}) == ["p000", "p002", "p003"]  # the others finished
    ran.clear()
    state["fail"] = False
    assert main(["sweep", str(path), "--out-dir", str(out)]) == 0
    owl_data = next(t.id for t in build_graph(load_sweep(path)) if t.kind == "data" and "p001" in t.points)
    assert ran == [owl_data, "run-p001"]  # only the failed point (and its data task: every stage cached)
    sweep = json.loads((root / "sweep.json").read_text())
    assert sweep["failed"] == {} and sweep["run"]["points_reused"] == ["p000", "p002", "p003"]
    assert _canonical(out) == _canonical(tmp / "local")


def test_a_sweep_killed_inside_a_point_resumes_to_the_same_summaries(local):
    path, tmp, _ = local
    out = tmp / "killed"
    env = {**ENV, "INTERP_KILL_AT": "stage:student/same-init"}
    p = subprocess.run(_sweep_cmd(path, out), env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL and "killing this process at stage:student/same-init" in p.stderr, p.stderr[-3000:]
    assert list((out / "grid" / "stages").glob("student__same-init__*.partial"))  # killed inside the point's training
    assert not (out / "grid" / "sweep.json").exists()
    rerun = subprocess.run(_sweep_cmd(path, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _canonical(out) == _canonical(tmp / "local")
