"""Where a sweep's tasks run: in this process, on Ray, or on Slurm through submitit.

- `local`: in this process, in graph order (one model load per base for the whole sweep).
- `ray`: one Ray task per sweep task, with `num_cpus` / `num_gpus` from `[resources]`
  (fractional GPUs: several 135M students share one). Ray gives each task only its GPU
  (`CUDA_VISIBLE_DEVICES`), so "auto" means that one. `address=None` starts a local Ray on
  this machine; `address="auto"` or "ray://host:10001" joins a running cluster, whose nodes
  must have interp installed. A worker that dies mid-task is retried (`max_retries`); a
  rerun of the sweep reuses every stage that finished.
- `slurm`: submitit jobs, one per task, submitted in waves (the data tasks, then the runs),
  so a run never starts before its data. `cluster="local"` runs the jobs as local processes
  (submitit's LocalExecutor), `"debug"` in this process; None: Slurm when it is there.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.config import ConfigError
from interp.sweep.spec import Sweep
from interp.sweep.tasks import Task, execute, task_payload

log = logging.getLogger("interp")

ENGINES = ("local", "ray", "slurm")


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"--engine {extra} needs {module}: pip install 'interp[{extra}]' ({e})") from e


def run_local(sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None]) -> list[dict]:
    out = []
    for t in tasks:
        res = execute(task_payload(sweep, root, t, worker=False))
        progress(res)
        out.append(res)
    return out


def _ray_task(payload: dict[str, Any], *after: Any) -> dict[str, Any]:
    return execute(payload, *after)


def run_ray(
    sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None],
    address: str | None = None, max_retries: int = 2, num_cpus: int | None = None,
) -> list[dict]:  # fmt: skip
    ray = _need("ray", "ray")
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:  # a local Ray: its workers inherit this environment
            kw["num_cpus"] = num_cpus or os.cpu_count()
            here = str(Path(__file__).resolve().parents[2])  # interp importable as it is here
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=address, **kw)
        started = True
    try:
        remote = ray.remote(_ray_task)
        refs: dict[str, Any] = {}
        for t in tasks:  # graph order: a task's dependencies are submitted before it
            opts = {"num_cpus": sweep.resources.cpus, "num_gpus": sweep.resources.gpus,
                    "max_retries": max_retries, "name": f"interp:{t.id}"}  # fmt: skip
            refs[t.id] = remote.options(**opts).remote(task_payload(sweep, root, t), *[refs[d] for d in t.deps])
        out, pending = {}, {ref: tid for tid, ref in refs.items()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            tid = pending.pop(done[0])
            out[tid] = ray.get(done[0])
            progress(out[tid])
        return [out[t.id] for t in tasks]
    finally:
        if started:
            ray.shutdown()


def run_slurm(
    sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None], cluster: str | None = None,
) -> list[dict]:  # fmt: skip
    submitit = _need("submitit", "slurm")
    ex = submitit.AutoExecutor(folder=root / "submitit" / "%j", cluster=cluster)
    params: dict[str, Any] = {"name": f"interp-{sweep.name}", "timeout_min": sweep.slurm.get("timeout_min", 240),
                              "cpus_per_task": max(1, math.ceil(sweep.resources.cpus)),
                              "gpus_per_node": math.ceil(sweep.resources.gpus)}  # fmt: skip
    if "mem_gb" in sweep.slurm:
        params["mem_gb"] = sweep.slurm["mem_gb"]
    for k in ("partition", "account", "qos"):
        if k in sweep.slurm:
            params[f"slurm_{k}"] = sweep.slurm[k]
    ex.update_parameters(**params)
    out: dict[str, dict] = {}
    waves = [[t for t in tasks if t.kind == "data"], [t for t in tasks if t.kind != "data"]]
    for wave in waves:
        jobs = [(t, ex.submit(execute, task_payload(sweep, root, t))) for t in wave]
        for t, job in jobs:
            log.info("sweep %s: task %s is job %s", sweep.name, t.id, job.job_id)
        for t, job in jobs:
            out[t.id] = job.result()  # raises the task's error, with its log's path
            progress(out[t.id])
    return [out[t.id] for t in tasks]
