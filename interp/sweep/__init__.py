"""Sweeps: a base config times axes, run as a graph of tasks on an engine you already use.

    interp plan  SWEEP.toml                       # the task graph: what is cached, what will run, where
    interp sweep SWEEP.toml --engine local|ray|slurm

`spec` reads and checks the sweep file, `tasks` builds the graph and runs one task, `engines`
runs the graph (in process, Ray, submitit), `aggregate` makes the sweep's table and PDF from
the stored summaries only. Results land in `<out>/<sweep name>/`: `points/<point>/` (each a
normal run folder, readable by `interp analyze` and `interp report`), the shared `stages/`,
`sweep.json` and `sweep.pdf`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from interp.config import ConfigError
from interp.extras import missing
from interp.fmt import format_table
from interp.store.stages import read_json, write_json
from interp.sweep.aggregate import aggregate, sweep_pdf
from interp.sweep.engines import ENGINES, run_local, run_ray, run_slurm
from interp.sweep.spec import Point, Resources, Sweep, load_sweep, sweep_root
from interp.sweep.tasks import Task, build_graph, run_is_current

__all__ = ["ENGINES", "Point", "Resources", "Sweep", "SweepTaskError", "Task", "aggregate", "build_graph", "load_sweep",
           "plan", "report_sweep", "run_sweep", "sweep_root"]  # fmt: skip

log = logging.getLogger("interp")


class SweepTaskError(RuntimeError):
    """A task of the sweep failed (its worker died, or its run raised): one line naming it;
    every stage that finished is kept, so rerunning the sweep resumes there."""


def is_sweep_folder(path: str | Path) -> bool:
    """A folder `interp sweep` wrote (its sweep.json names the sweep file)."""
    return (Path(path) / "sweep.json").is_file()


def report_sweep(folder: str | Path, out: str | Path | None = None) -> Path:
    """`interp report SWEEP_FOLDER`: the sweep's PDF again, from its points' stored summaries
    (the sweep file named in its sweep.json, read anew), the run record of the last sweep kept."""
    folder = Path(folder)
    old = read_json(folder / "sweep.json")
    if not old.get("file"):
        raise ConfigError(f"{folder / 'sweep.json'}: field 'file' is missing (written before sweeps recorded their file): "
                          f"run `interp sweep` on the sweep file again")  # fmt: skip
    sweep = load_sweep(old["file"])
    result = aggregate(sweep, folder)
    result["run"] = old.get("run", {})
    out_pdf = Path(out) if out else folder / "sweep.pdf"
    return sweep_pdf(result, out_pdf, sweep, folder)


def plan(sweep: Sweep, out_dir: str | Path | None = None, engine: str = "local") -> list[dict[str, Any]]:
    """One row per task: what it needs, whether its result is already stored, where it would run."""
    root = sweep_root(sweep, out_dir)
    tasks = build_graph(sweep)
    current = {p.name: run_is_current(root, sweep, p.name) for p in sweep.points}
    r = sweep.resources
    where = "this process" if engine == "local" else f"{engine}: {r.cpus:g} cpu, {r.gpus:g} gpu per task"
    rows = []
    for t in tasks:
        done = all(current[p] for p in t.points)
        state = "cached" if done else ("to run" if t.kind == "run" else "to run (stored stages reused)")
        values = sweep.point(t.point).label() if t.kind == "run" else f"{len(t.points)} point(s): {', '.join(t.points)}"
        rows.append({"task": t.id, "needs": ", ".join(t.deps) or "-", "state": state, "on": where, "config": values})
    return rows


def _reused(root: Path, task: Task) -> dict[str, Any]:
    """The result of a run task whose point's summary is current (it is not run again)."""
    prov = read_json(Path(root) / "points" / task.point / "summary.json").get("provenance", {})
    return {"task": task.id, "point": task.point, "computed": [], "used": prov.get("stages_used", []),
            "wall_s": 0.0, "host": None, "pid": None, "reused": True}  # fmt: skip


def run_sweep(
    sweep: Sweep, engine: str = "local", out_dir: str | Path | None = None, address: str | None = None,
    cluster: str | None = None, num_cpus: int | None = None, retries: int = 2,
) -> dict[str, Any]:  # fmt: skip
    """Run every task of the sweep on `engine`, then aggregate; returns (and writes) sweep.json.

    A point whose summary was made from its current config is not run again (a rerun retries
    only the points that failed or are missing). A task that fails is recorded and the others
    go on; sweep.json is written for the points that finished, with the failures under
    `failed`, and then one `SweepTaskError` line names the failed points.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}; allowed: {', '.join(ENGINES)}")
    root = sweep_root(sweep, out_dir)
    root.mkdir(parents=True, exist_ok=True)
    tasks = build_graph(sweep)
    current = {p.name for p in sweep.points if run_is_current(root, sweep, p.name)}
    todo = [t for t in tasks if not set(t.points) <= current]
    reused = [_reused(root, t) for t in tasks if t.kind == "run" and t.point in current]
    t0, n = time.time(), len(todo)
    finished: list[dict] = []

    def progress(res: dict) -> None:
        finished.append(res)
        log.info("sweep %s: [%d/%d] %s done in %.1fs (%d stages computed, pid %s)",
                 sweep.name, len(finished), n, res["task"], res["wall_s"], len(res["computed"]), res["pid"])  # fmt: skip

    log.info("sweep %s: %d points (%d finished before), %d tasks to run on %s -> %s",
             sweep.name, len(sweep.points), len(current), n, engine, root)  # fmt: skip
    try:
        if engine == "local":
            results, failed = run_local(sweep, root, todo, progress)
        elif engine == "ray":
            results, failed = run_ray(sweep, root, todo, progress, address=address, num_cpus=num_cpus,
                                      max_retries=retries)  # fmt: skip
        else:
            results, failed = run_slurm(sweep, root, todo, progress, cluster=cluster)
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the engine itself failed, whatever its type: one line
        log.error("sweep %s: engine failure:\n%s", sweep.name, e)  # the engine's whole report (traceback)
        done = ", ".join(r["task"] for r in finished) or "none"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SweepTaskError(f"sweep {sweep.name} on {engine}: a task failed ({type(e).__name__}: {first[:300]}); "
                             f"finished tasks: {done}; their stages are kept: rerun the sweep to resume") from e
    results = reused + results
    computed = Counter(s for r in results for s in r["computed"])
    users = Counter(s for r in results if r["task"].startswith("run-") for s in set(r["used"]))
    by_task = {t.id: t for t in tasks}
    failed_points = {p: {"task": tid, **why} for tid, why in failed.items() for p in by_task[tid].points
                     if p not in current}  # fmt: skip
    result = aggregate(sweep, root)
    result["failed"] = {p: failed_points[p] for p in sorted(failed_points)}
    for p, f in result["failed"].items():  # the PDF's "points without a summary" says why
        result["missing"][p] = f"failed: {f['error']} (log {f['log']})"
    result["run"] = {
        "engine": engine, "address": address, "cluster": cluster, "tasks": len(tasks), "tasks_run": n,
        "points_reused": sorted(current),
        "resources": {"cpus": sweep.resources.cpus, "gpus": sweep.resources.gpus},
        "wall_s": round(time.time() - t0, 2), "stages_computed": sum(computed.values()),
        "stages_shared": sum(1 for c in users.values() if c > 1),
        # a stage computed by more than one task of this sweep (never expected: the store locks)
        "computed_twice": sorted(s for s, c in computed.items() if c > 1),
        "task_results": results,
    }  # fmt: skip
    write_json(root / "sweep.json", result)
    why = missing("reportlab")
    if why is None:
        sweep_pdf(result, root / "sweep.pdf", sweep, root)
    else:
        log.warning("sweep.pdf skipped: %s", why)
    print(format_table(result["table"]))
    pdf = "" if why else f", {root / 'sweep.pdf'}"
    print(f"\nsweep: {root / 'sweep.json'}{pdf} ({result['run']['wall_s']:.0f}s)")
    if result["failed"]:
        named = "; ".join(f"{p} ({f['error']}; log {f['log']})" for p, f in result["failed"].items())
        raise SweepTaskError(f"sweep {sweep.name}: {len(result['failed'])} of {len(sweep.points)} points failed: "
                             f"{named}; the others are in {root / 'sweep.json'}: rerun the sweep to retry only "
                             f"the failed ones")  # fmt: skip
    return result
