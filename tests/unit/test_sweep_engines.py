"""The sweep engines' bookkeeping without models: a failed task is recorded and the others go
on (local, Slurm); an interrupted Slurm sweep cancels its unfinished jobs (fake submitit)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from interp.sweep import engines
from interp.sweep.spec import Point, Resources, Sweep
from interp.sweep.tasks import Task


def _sweep(tmp: Path) -> tuple[Sweep, list[Task]]:
    points = [Point(f"p00{i}", {"x": i}) for i in range(3)]
    sw = Sweep(tmp / "grid.toml", "grid", tmp / "base.toml", {}, {"x": [0, 1, 2]}, Resources(), {}, points)
    tasks = [Task("data-a", "data", "p000", (), ("p000", "p001")), Task("data-b", "data", "p002", (), ("p002",)),
             *[Task(f"run-{p.name}", "run", p.name, ("data-b",) if p.name == "p002" else ("data-a",), (p.name,))
               for p in points]]  # fmt: skip
    return sw, tasks


def _ok(payload: dict) -> dict:
    return {"task": payload["task"], "point": payload["point"], "computed": [], "used": [], "wall_s": 0.0,
            "host": "h", "pid": 1}  # fmt: skip


def test_local_engine_records_a_failed_task_with_its_log_and_goes_on(tmp_path, monkeypatch):
    sw, tasks = _sweep(tmp_path)
    ran = []

    def execute(payload, *after):
        ran.append(payload["task"])
        if payload["task"] in ("run-p001", "data-b"):
            raise ValueError(f"injected failure of {payload['task']}\nsecond line")
        return _ok(payload)

    monkeypatch.setattr(engines, "execute", execute)
    done = []
    results, failed = engines.run_local(sw, tmp_path, tasks, done.append)
    assert ran == ["data-a", "data-b", "run-p000", "run-p001"]  # run-p002 needs data-b: not started
    assert [r["task"] for r in results] == [r["task"] for r in done] == ["data-a", "run-p000"]
    assert failed["run-p001"]["error"] == "ValueError: injected failure of run-p001"
    log = Path(failed["run-p001"]["log"])
    assert log == tmp_path / "logs" / "run-p001.log"
    assert "Traceback" in log.read_text() and "second line" in log.read_text()
    assert failed["run-p002"] == {"error": "not started: its task data-b failed", "log": failed["data-b"]["log"]}


class _Job:
    def __init__(self, n: int, task: str, outcome) -> None:
        self.job_id, self.task, self.outcome = str(1000 + n), task, outcome
        self.finished = self.cancelled = False
        self.paths = SimpleNamespace(stderr=Path(f"/logs/{self.job_id}_0_log.err"))

    def result(self) -> dict:
        out = self.outcome(self)
        self.finished = True
        return out

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> None:
        self.cancelled = True


def _fake_submitit(monkeypatch, outcomes: dict) -> list[_Job]:
    """A submitit whose jobs do `outcomes[task](job)` when waited for (default: succeed)."""
    jobs: list[_Job] = []

    class Executor:
        def __init__(self, folder, cluster=None) -> None:
            pass

        def update_parameters(self, **kw) -> None:
            pass

        def submit(self, fn, payload) -> _Job:
            job = _Job(len(jobs), payload["task"], outcomes.get(payload["task"], lambda j: _ok(payload)))
            jobs.append(job)
            return job

    monkeypatch.setattr(engines, "_need", lambda module, extra: SimpleNamespace(AutoExecutor=Executor))
    return jobs


def _fail(job: _Job) -> dict:
    raise RuntimeError(f"Job {job.job_id} failed\nTraceback ...")


def test_slurm_engine_records_a_failed_job_with_its_log_and_goes_on(tmp_path, monkeypatch):
    sw, tasks = _sweep(tmp_path)
    jobs = _fake_submitit(monkeypatch, {"data-b": _fail})
    results, failed = engines.run_slurm(sw, tmp_path, tasks, lambda r: None)
    assert [j.task for j in jobs] == ["data-a", "data-b", "run-p000", "run-p001"]  # run-p002: not submitted
    assert [r["task"] for r in results] == ["data-a", "run-p000", "run-p001"]
    assert failed == {"data-b": {"error": "RuntimeError: Job 1001 failed", "log": "/logs/1001_0_log.err"},
                      "run-p002": {"error": "not started: its task data-b failed", "log": "/logs/1001_0_log.err"}}


def _interrupt(job: _Job) -> dict:
    raise KeyboardInterrupt


def _sigterm(job: _Job) -> dict:
    handler = signal.getsignal(signal.SIGTERM)  # what the OS would call on SIGTERM while we wait
    assert callable(handler), "no SIGTERM handler while waiting on the jobs"
    handler(signal.SIGTERM, None)
    raise AssertionError("the SIGTERM handler did not interrupt the wait")


@pytest.mark.parametrize("how", [_interrupt, _sigterm])
def test_an_interrupted_slurm_sweep_cancels_its_unfinished_jobs(tmp_path, monkeypatch, how):
    sw, tasks = _sweep(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    # wave 2: run-p000 finishes, run-p001's wait is interrupted, run-p002 still runs
    jobs = _fake_submitit(monkeypatch, {"run-p001": how})
    with pytest.raises(KeyboardInterrupt):
        engines.run_slurm(sw, tmp_path, tasks, lambda r: None)
    state = {j.task: (j.finished, j.cancelled) for j in jobs}
    assert state == {"data-a": (True, False), "data-b": (True, False), "run-p000": (True, False),
                     "run-p001": (False, True), "run-p002": (False, True)}  # fmt: skip
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
