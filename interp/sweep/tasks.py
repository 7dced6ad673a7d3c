"""A sweep as a graph of tasks over one shared stage store, and the function a worker runs.

Two kinds of task:
- `data-<id>`: the experiment's `prepare` (teachers and their data) for one data identity,
  run once for every point that shares it (e.g. the points that differ only in training);
- `run-<point>`: the point's whole run (students, evaluations, summary), after its data task.

Every point's run folder is `<sweep>/points/<point>/`, whose `stages/` is a link to the sweep's
one store `<sweep>/stages/`: a stage two points share (the control data and control students,
which do not depend on the target; the data of points that differ only in training) has one
key, one folder, and is computed by whichever worker reaches it first while the others wait on
its lock and reuse it. Correctness never depends on the graph: the store decides what is the
same stage, by key; the data tasks only put the shared stages first.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.config import dumps_toml, to_dict
from interp.store.runfolder import config_key
from interp.store.stages import read_json, stable_hash
from interp.sweep.spec import Sweep


@dataclass(frozen=True)
class Task:
    id: str
    kind: str  # "data" | "run"
    point: str  # the point whose config the task runs
    deps: tuple[str, ...] = ()
    points: tuple[str, ...] = ()  # the points that need it (data tasks: all of its identity)


def build_graph(sweep: Sweep) -> list[Task]:
    """The tasks in an order that respects their dependencies (data tasks first)."""
    data: dict[str, list[str]] = {}
    for p in sweep.points:
        exp, cfg = sweep.configs[p.name]
        if exp.prepare is not None and exp.data_identity is not None:
            data.setdefault(stable_hash(exp.data_identity(cfg), 8), []).append(p.name)
    tasks = [Task(f"data-{ident}", "data", pts[0], (), tuple(pts)) for ident, pts in data.items()]
    need = {p: t.id for t in tasks for p in t.points}
    runs = [Task(f"run-{p.name}", "run", p.name, (need[p.name],) if p.name in need else (), (p.name,))
            for p in sweep.points]  # fmt: skip
    return tasks + runs


def point_dir(root: Path, point: str) -> Path:
    """The point's run folder, its `stages/` linked to the sweep's shared store."""
    d = Path(root) / "points" / point
    d.mkdir(parents=True, exist_ok=True)
    (Path(root) / "stages").mkdir(exist_ok=True)
    link = d / "stages"
    if not link.is_symlink():
        if link.exists():  # a real folder: a run made here before the sweep shared its store
            raise FileExistsError(f"{link} is a folder, not the link to the sweep's store")
        try:
            link.symlink_to(Path("..") / ".." / "stages", target_is_directory=True)
        except FileExistsError:  # another worker made it first
            pass
    return d


def run_is_current(root: Path, sweep: Sweep, point: str) -> bool:
    """Whether the point's summary was made from exactly this point's config."""
    f = Path(root) / "points" / point / "summary.json"
    try:
        return read_json(f).get("config_key") in point_keys(sweep, point)
    except (OSError, ValueError):
        return False


def point_keys(sweep: Sweep, point: str) -> set[str]:
    """The config keys a finished run of `point` can record: a run writes its config with every
    `autocast = "auto"` resolved (`runner.resolve_autocasts`), to "bf16" where it ran with native
    bfloat16 and "off" elsewhere, and the machine that ran it need not be this one (a cluster's
    workers); either counts."""
    from interp.runner import set_autocasts

    keys = set()
    for value in ("bf16", "off"):
        cfg = copy.deepcopy(sweep.configs[point][1])
        set_autocasts(cfg, value)
        keys.add(config_key(dumps_toml(to_dict(cfg))))
    return keys


def task_payload(sweep: Sweep, root: Path, task: Task, worker: bool = True) -> dict[str, Any]:
    """What a worker needs, as plain data (it crosses process and machine boundaries).
    `worker`: a process of its own, whose torch uses `resources.cpus` threads (the local
    engine's tasks share this process and its threads)."""
    return {"task": task.id, "kind": task.kind, "point": task.point, "root": str(root),
            "base": str(sweep.base), "overrides": sweep.point(task.point).overrides(sweep.fixed),
            "threads": max(1, int(sweep.resources.cpus)) if worker else None}  # fmt: skip


def execute(payload: dict[str, Any], *after: Any) -> dict[str, Any]:
    """Run one task in this process (any engine's worker); returns what it computed and reused.

    `after`: the results of the tasks it depends on (engines pass them so the task waits).
    """
    if payload["threads"]:
        os.environ["INTERP_THREADS"] = str(payload["threads"])
    from interp.lm.models import configure_threads
    from interp.registry import seed_everything
    from interp.runner import open_run, run_config

    root = Path(payload["root"])
    point_dir(root, payload["point"])
    t0 = time.time()
    if payload["kind"] == "data":
        exp, cfg, run_dir = open_run(payload["base"], payload["overrides"], root / "points")
        configure_threads()
        seed_everything(cfg.seed)
        exp.prepare(cfg, run_dir)
        computed, used = list(run_dir.computed), list(run_dir.used)
    else:
        run_root = run_config(payload["base"], payload["overrides"], root / "points")
        prov = read_json(run_root / "summary.json")["provenance"]
        computed, used = prov["stages_computed"], prov["stages_used"]
    return {"task": payload["task"], "point": payload["point"], "computed": computed, "used": used,
            "wall_s": round(time.time() - t0, 2), "host": socket.gethostname(), "pid": os.getpid()}  # fmt: skip
