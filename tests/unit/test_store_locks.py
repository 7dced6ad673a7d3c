"""Concurrency and faults in the store: the config move under the folder's lock, lock waits that
end naming the holder, unique superseded folders, fsync before every rename."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.config import ConfigError
from interp.store import locks
from interp.store.locks import LockTimeout, lock_timeout
from interp.store.runfolder import config_key, start_run, write_output
from interp.store.stages import RunDir, write_atomic, write_json

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
CFG_A = 'name = "run"\nseed = 0\n'
CFG_B = 'name = "run"\nseed = 1\n'

# One run of a config on a folder: start, work for `secs`, write its summary (as runner.run_config).
_RUN = """
import sys, time
from interp.store.runfolder import config_key, start_run, write_output
root, cfg, delay, secs = sys.argv[1], sys.argv[2].replace("|", "\\n"), float(sys.argv[3]), float(sys.argv[4])
time.sleep(delay)
key = start_run(root, cfg)
time.sleep(secs)
print(write_output(root, cfg, "summary.json", {"config_key": key, "who": cfg}))
"""


def _run(root: Path, cfg: str, delay: float, secs: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN, str(root), cfg.replace("\n", "|"), str(delay), str(secs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip


def _summaries(root: Path) -> dict[str, Path]:
    """{config text: folder} of every summary under the run folder, each checked against the
    config.toml beside it."""
    out = {}
    for s in [root / "summary.json", *sorted(root.glob("superseded/*/summary.json"))]:
        if s.exists():
            summary = json.loads(s.read_text())
            beside = (s.parent / "config.toml").read_text()
            assert summary["config_key"] == config_key(beside), s  # never beside another config
            out[summary["who"]] = s.parent
    return out


def test_two_configs_started_at_once_on_one_folder_both_keep_their_summaries(tmp_path):
    root = tmp_path / "run"
    # A starts, B starts (moving A's config aside) and finishes, then A finishes: without the
    # folder lock and `write_output`, A's summary lands beside B's config, over B's summary.
    a, b = _run(root, CFG_A, 0.0, 2.0), _run(root, CFG_B, 0.8, 0.0)
    for p in (a, b):
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    got = _summaries(root)
    assert set(got) == {CFG_A, CFG_B}
    assert got[CFG_B] == root and got[CFG_A].parent == root / "superseded"
    assert (root / "config.toml").read_text() == CFG_B


def test_write_output_after_the_folder_changed_hands_in_process(tmp_path):
    root = tmp_path / "run"
    ka = start_run(root, CFG_A)
    kb = start_run(root, CFG_B)  # A's config.toml goes to superseded/
    pa = write_output(root, CFG_A, "summary.json", {"config_key": ka, "who": CFG_A})
    pb = write_output(root, CFG_B, "summary.json", {"config_key": kb, "who": CFG_B})
    assert pb == root / "summary.json" and pa.parent.parent == root / "superseded"
    assert _summaries(root) == {CFG_A: pa.parent, CFG_B: root}
    # A config that never had a folder of its own there gets a new superseded one, with its config
    kc = config_key('name = "run"\nseed = 2\n')
    pc = write_output(root, 'name = "run"\nseed = 2\n', "summary.json", {"config_key": kc, "who": "c"})
    assert pc.parent not in (root, pa.parent) and (pc.parent / "config.toml").read_text().endswith("seed = 2\n")


def test_superseded_folders_have_unique_names_within_one_second(tmp_path):
    root = tmp_path / "run"
    for seed in range(4):  # well under a second: the old names (by the second) would collide
        key = start_run(root, f'name = "run"\nseed = {seed}\n')
        write_json(root / "summary.json", {"config_key": key, "seed": seed})
    old = sorted((root / "superseded").iterdir())
    assert len(old) == 3
    kept = sorted(json.loads((d / "summary.json").read_text())["seed"] for d in old)
    assert kept == [0, 1, 2]  # none overwritten by the next
    assert json.loads((root / "summary.json").read_text())["seed"] == 3


_HOLDER = """
import sys, time
from interp.store.stages import RunDir
st = RunDir(sys.argv[1]).stage("slow", {"a": 1})  # takes the stage's lock
print("holding", flush=True)
time.sleep(30)
"""


def test_a_lock_wait_ends_after_the_timeout_naming_the_holder(tmp_path, monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=ENV)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("INTERP_LOCK_TIMEOUT", "1.5")
        t0 = time.time()
        with pytest.raises(LockTimeout) as e:
            RunDir(tmp_path).stage("slow", {"a": 1})
        waited = time.time() - t0
    finally:
        holder.kill()
        holder.wait()
    msg = str(e.value)
    assert 1.4 < waited < 10, waited
    assert "\n" not in msg and "stage slow" in msg and "INTERP_LOCK_TIMEOUT" in msg
    assert f"pid {holder.pid} on {socket.gethostname()} since " in msg
    # the holder was killed (SIGKILL): the OS freed its lock, the next one takes it at once
    st = RunDir(tmp_path).stage("slow", {"a": 1})
    with st.running() as out:
        (out / "x.txt").write_text("x")
    assert st.done


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_lock_timeout_is_one_line(monkeypatch, bad):
    monkeypatch.setenv("INTERP_LOCK_TIMEOUT", bad)
    with pytest.raises(ConfigError, match=r"INTERP_LOCK_TIMEOUT=.*expected seconds"):
        lock_timeout()


def test_lock_timeout_default_is_six_hours(monkeypatch):
    monkeypatch.delenv("INTERP_LOCK_TIMEOUT", raising=False)
    assert lock_timeout() == 6 * 3600


def _record_fsync_and_rename(monkeypatch) -> list[tuple[str, str]]:
    """Every fsync (by the path of its descriptor) and rename, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rename = os.fsync, Path.replace, Path.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append(("rename", str(self)))
        return real_replace(self, target)

    def rename(self: Path, target: Path) -> Path:
        events.append(("rename", str(self)))
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    monkeypatch.setattr(Path, "rename", rename)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_write_atomic_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = _record_fsync_and_rename(monkeypatch)
    write_atomic(tmp_path / "x.json", "{}")
    (tmp,) = [p for kind, p in events if kind == "rename"]
    assert events.index(("fsync", tmp)) < events.index(("rename", tmp))
    assert events[-1] == ("fsync", str(tmp_path))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_a_stage_is_fsynced_before_its_folder_is_renamed(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    st = run.stage("generate/trait", {"n": 1})
    events = _record_fsync_and_rename(monkeypatch)
    with st.running() as out:
        with open(out / "data.jsonl", "w") as f:  # written by a plain open: not fsynced by its writer
            f.write('{"a": 1}\n')
    partial = str(st.path.with_name(st.path.name + ".partial"))
    at = events.index(("rename", partial))
    synced = {p for kind, p in events[:at] if kind == "fsync"}
    assert {partial + "/data.jsonl", partial + "/manifest.json", partial} <= synced
    assert ("fsync", str(st.path.parent)) in events[at:]


def test_the_kill_hook_only_fires_when_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("INTERP_KILL_AT", raising=False)
    locks.fault_point("stage:generate/trait")  # unset: nothing happens
    monkeypatch.setenv("INTERP_KILL_AT", "stage:filter")
    locks.fault_point("stage:generate/trait")  # another point: nothing happens
    code = ("import os; os.environ['INTERP_KILL_AT'] = 'file:summary.json'\n"
            "from interp.store.stages import write_atomic\n"
            f"write_atomic({str(tmp_path / 'summary.json')!r}, 'x')\nprint('survived')")  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode == -9 and "survived" not in p.stdout
    assert not (tmp_path / "summary.json").exists()  # killed before the rename: no file, not half a one
