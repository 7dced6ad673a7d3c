"""Where a sweep's tasks run: in this process, on Ray, or on Slurm through submitit.

- `local`: in this process, in graph order (one model load per base for the whole sweep).

Every engine returns (results of the tasks that finished, {task: its error line and log} of
those that failed); a failed task does not stop the others, and a task whose data task failed
is not started.
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
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


Failed = dict[str, dict[str, Any]]  # task id -> {"error": one line, "log": where its log is}


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else '(no message)'}"


def _failed_dep(t: Task, failed: Failed) -> dict[str, Any] | None:
    """The failure of a task `t` needs, as `t`'s own (it is not started: it would fail the same)."""
    bad = [d for d in t.deps if d in failed]
    if not bad:
        return None
    return {"error": f"not started: its task {bad[0]} failed", "log": failed[bad[0]]["log"]}


@contextmanager
def _task_log(path: Path) -> Iterator[None]:
    """The interp log of one local task copied to `path` (with the traceback, if it fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    try:
        yield
    except Exception:
        handler.stream.write(traceback.format_exc())
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def run_local(
    sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None]
) -> tuple[list[dict], Failed]:
    """Every task in this process, in graph order. A task that raises is recorded (its error
    line and its log, `<root>/logs/<task>.log`) and the others go on; a task whose data task
    failed is not started."""
    out, failed = [], {}
    for t in tasks:
        if (why := _failed_dep(t, failed)) is not None:
            failed[t.id] = why
            continue
        task_log = root / "logs" / f"{t.id}.log"
        try:
            with _task_log(task_log):
                res = execute(task_payload(sweep, root, t, worker=False))
        except Exception as e:  # noqa: BLE001 - any failure of one point: record it, go on
            failed[t.id] = {"error": _one_line(e), "log": str(task_log)}
            log.error("sweep %s: task %s failed (%s); its log: %s; going on with the others",
                      sweep.name, t.id, failed[t.id]["error"], task_log)  # fmt: skip
            continue
        progress(res)
        out.append(res)
    return out, failed


def _ray_task(payload: dict[str, Any], *after: Any) -> dict[str, Any]:
    return execute(payload, *after)


def run_ray(
    sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None],
    address: str | None = None, max_retries: int = 2, num_cpus: int | None = None,
) -> tuple[list[dict], Failed]:  # fmt: skip
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
    pending: dict[Any, str] = {}
    try:
        remote = ray.remote(_ray_task)
        refs: dict[str, Any] = {}
        for t in tasks:  # graph order: a task's dependencies are submitted before it
            opts = {"num_cpus": sweep.resources.cpus, "num_gpus": sweep.resources.gpus,
                    "max_retries": max_retries, "name": f"interp:{t.id}"}  # fmt: skip
            refs[t.id] = remote.options(**opts).remote(task_payload(sweep, root, t), *[refs[d] for d in t.deps])
        out, failed, pending = {}, {}, {ref: tid for tid, ref in refs.items()}
        by_id = {t.id: t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            tid = pending.pop(done[0])
            try:
                out[tid] = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - the task (or a task it needs) failed: record it
                failed[tid] = _failed_dep(by_id[tid], failed) or {
                    "error": _one_line(e), "log": "the Ray worker logs (/tmp/ray/session_latest/logs)"}
                log.error("sweep %s: task %s failed (%s)", sweep.name, tid, failed[tid]["error"])
                continue
            progress(out[tid])
        return [out[t.id] for t in tasks if t.id in out], failed
    except BaseException:  # interrupted: the tasks of a cluster outlive this process otherwise
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _cancel(jobs: list[Any]) -> None:
    for job in jobs:
        try:
            if not job.done():
                job.cancel()
                log.info("cancelled job %s", job.job_id)
        except Exception as e:  # noqa: BLE001 - cancel every other one regardless
            log.warning("could not cancel job %s: %s", getattr(job, "job_id", "?"), e)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_slurm(
    sweep: Sweep, root: Path, tasks: list[Task], progress: Callable[[dict], None], cluster: str | None = None,
) -> tuple[list[dict], Failed]:  # fmt: skip
    """submitit jobs in two waves (data, then runs). A failed job is recorded with its stderr
    log; an interrupt (Ctrl-C, or SIGTERM while waiting) cancels every job not finished."""
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
    failed: Failed = {}
    submitted: list[Any] = []
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        for wave in ([t for t in tasks if t.kind == "data"], [t for t in tasks if t.kind != "data"]):
            jobs = []
            for t in wave:
                if (why := _failed_dep(t, failed)) is not None:
                    failed[t.id] = why
                    continue
                job = ex.submit(execute, task_payload(sweep, root, t))
                submitted.append(job)
                jobs.append((t, job))
                log.info("sweep %s: task %s is job %s", sweep.name, t.id, job.job_id)
            for t, job in jobs:
                try:
                    out[t.id] = job.result()  # raises the task's error
                except Exception as e:  # noqa: BLE001 - one job failed: record it, wait for the others
                    failed[t.id] = {"error": _one_line(e), "log": str(job.paths.stderr)}
                    log.error("sweep %s: task %s (job %s) failed (%s); its log: %s", sweep.name, t.id,
                              job.job_id, failed[t.id]["error"], failed[t.id]["log"])  # fmt: skip
                    continue
                progress(out[t.id])
    except BaseException:
        log.warning("sweep %s: interrupted; cancelling its unfinished jobs", sweep.name)
        _cancel(submitted)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)
    return [out[t.id] for t in tasks if t.id in out], failed
