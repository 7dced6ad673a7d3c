"""Which sweep points count as finished (`interp.sweep.tasks.run_is_current`): a point's summary
records the key of the config its run wrote, with `autocast = "auto"` resolved on the machine
that ran it, so the sweep must recognise it whether that machine had native bf16 or not."""

from __future__ import annotations

import json

from helpers import tiny_subliminal_config, write_config

from interp.config import dumps_toml, to_dict
from interp.runner import open_run
from interp.store.runfolder import config_key
from interp.sweep import load_sweep
from interp.sweep.tasks import build_graph, run_is_current, task_payload


def _summary(root, point, text):
    d = root / "points" / point
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps({"config_key": config_key(text)}))


def test_a_point_run_with_autocast_auto_is_current_wherever_it_ran(tmp_path):
    cfg = tiny_subliminal_config()
    cfg["data"]["autocast"] = cfg["train"]["autocast"] = "auto"
    write_config(tmp_path, cfg, name="base")
    path = tmp_path / "grid.toml"
    path.write_text('base = "base.toml"\n[axes]\n"train.lr" = [1e-3, 3e-3]\n')
    sw = load_sweep(path)
    root = tmp_path / "out"
    p0, p1 = (p.name for p in sw.points)
    texts = {}
    for p in (p0, p1):  # each point's config as a run of it here writes it ("auto" resolved on this machine)
        pay = task_payload(sw, root, next(t for t in build_graph(sw) if t.point == p and t.kind == "run"))
        _, resolved, _ = open_run(pay["base"], pay["overrides"], tmp_path / "scratch")
        texts[p] = dumps_toml(to_dict(resolved))
    here = "bf16" if 'autocast = "bf16"' in texts[p0] else "off"
    assert texts[p0].count(f'autocast = "{here}"') == 2 and 'autocast = "auto"' not in texts[p0]
    assert not run_is_current(root, sw, p0)  # nothing there yet
    _summary(root, p0, texts[p0])
    assert run_is_current(root, sw, p0)
    other = "off" if here == "bf16" else "bf16"  # the same point run on the other kind of machine
    _summary(root, p0, texts[p0].replace(f'autocast = "{here}"', f'autocast = "{other}"'))
    assert run_is_current(root, sw, p0)
    _summary(root, p0, texts[p1])  # another point's config is not this one's
    assert not run_is_current(root, sw, p0)
    _summary(root, p0, texts[p0].replace(f'autocast = "{here}"', f'autocast = "{other}"', 1))  # mixed: no run writes it
    assert not run_is_current(root, sw, p0)

