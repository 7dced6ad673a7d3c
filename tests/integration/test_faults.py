"""Kill `interp run` at random moments, damage its artifacts, run two at once: same summary.

Each case runs the tiny-model subliminal config in subprocesses (SIGKILL needs a process of
its own) and compares the final summary.json with an uninterrupted run's, provenance (times,
which stages were cached) and the run folder's path left out. `make test` runs a short
version; `pytest -m slow tests/integration/test_faults.py` the acceptance one (12 kills, 10 damages).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "INTERP_THREADS": "1"}


def _cfg(tmp: Path) -> Path:
    cfg = tiny_subliminal_config()
    cfg["students"] = cfg["students"][:2]  # same-init + control: enough stages, half the time
    return write_config(tmp, cfg, name="faults")


def _start(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "interp.cli", "run", str(cfg), "--out-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


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
    return cfg, _canonical(tmp / "out"), time.time() - t0


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
    cfg, expected, wall = reference
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
    cfg, expected, _ = reference
    out = tmp_path / "out"
    a, b = _start(cfg, out), _start(cfg, out)
    (oa, ea), (ob, eb) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (ea[-2000:], eb[-2000:])
    assert "Traceback" not in ea + eb
    table = lambda o: o[o.index("\nmodel ") :].split("\nsummary:")[0]  # noqa: E731
    assert table(oa) == table(ob)
    assert _canonical(out) == expected
