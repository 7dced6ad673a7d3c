"""The stage store cannot lie: verified reuse, complete keys, coherent runs, locks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interp.store.artifacts import load_run
from interp.store.runfolder import config_key, stale_outputs, start_run
from interp.store.stages import RunDir, write_atomic, write_json


def _finished(run: RunDir, name: str = "generate/trait", params: dict | None = None):
    st = run.stage(name, params or {"n": 1})
    with st.running() as out:
        (out / "data.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
        write_json(out / "info.json", {"n": 2})
    return st


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip", "delete", "manifest"],
)
def test_a_damaged_stage_is_detected_and_recomputed(tmp_path, caplog, damage):
    st = _finished(RunDir(tmp_path))
    f = st.path / "data.jsonl"
    if damage == "truncate":  # cut on a line boundary: a silent loss of rows without the check
        f.write_text('{"a": 1}\n')
    elif damage == "flip":  # same size, one byte changed
        b = bytearray(f.read_bytes())
        b[6] ^= 0x01
        f.write_bytes(bytes(b))
    elif damage == "delete":
        f.unlink()
    else:
        (st.path / "manifest.json").write_text('{"checksums": ')
    run2 = RunDir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="interp"):
        again = run2.stage("generate/trait", {"n": 1})
    assert again.key == st.key and not again.done
    assert "generate/trait" in run2.recomputed
    assert [r for r in caplog.records if "recomputing" in r.getMessage()]
    run2.release(again)


def test_an_intact_stage_is_reused_without_recomputation(tmp_path):
    st = _finished(RunDir(tmp_path))
    run2 = RunDir(tmp_path)
    again = run2.stage("generate/trait", {"n": 1})
    assert again.done and run2.cached == ["generate/trait"] and not run2.recomputed
    assert again.path == st.path


def test_the_key_covers_resolved_device_and_dtype_and_input_content(tmp_path):
    cpu32 = RunDir(tmp_path, device="cpu", dtype="float32")
    k = cpu32.stage("x", {"a": 1}).key
    assert RunDir(tmp_path / "b", device="cpu", dtype="float32").stage("x", {"a": 1}).key == k
    assert RunDir(tmp_path / "c", device="cuda:0", dtype="float32").stage("x", {"a": 1}).key != k
    assert RunDir(tmp_path / "d", device="cpu", dtype="bfloat16").stage("x", {"a": 1}).key != k
    # an input recomputed with different content changes the key of what is built on it
    run = RunDir(tmp_path / "e")
    a = _finished(run)
    b_key = run.stage("filter/trait", {"k": 2}, {"generate": a}).key
    (a.path / "manifest.json").unlink()
    import shutil

    shutil.rmtree(a.path)
    a2 = run.stage("generate/trait", {"n": 1})
    with a2.running() as out:
        (out / "data.jsonl").write_text('{"a": 3}\n')
    assert a2.key == a.key
    assert run.stage("filter/trait", {"k": 2}, {"generate": a2}).key != b_key


def test_write_atomic_leaves_only_the_file(tmp_path):
    write_atomic(tmp_path / "x.txt", "one")
    write_atomic(tmp_path / "x.txt", b"two")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    assert (tmp_path / "x.txt").read_text() == "two"


def test_a_changed_config_moves_the_old_outputs_aside(tmp_path):
    root = tmp_path / "run"
    key = start_run(root, 'name = "run"\nseed = 0\n')
    write_json(root / "summary.json", {"config_key": key, "x": 1})
    assert stale_outputs(root) == {}
    assert start_run(root, 'name = "run"\nseed = 0\n') == key  # same config: nothing moves
    assert (root / "summary.json").exists()
    key2 = start_run(root, 'name = "run"\nseed = 1\n')
    assert key2 != key and not (root / "summary.json").exists()
    (old,) = (root / "superseded").iterdir()
    assert json.loads((old / "summary.json").read_text())["x"] == 1
    assert 'seed = 0' in (old / "config.toml").read_text()


def test_an_output_of_another_config_is_flagged_and_refused(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.toml").write_text('name = "run"\nseed = 1\n')
    write_json(root / "summary.json", {"experiment": "subliminal",
                                       "config_key": config_key('name = "run"\nseed = 0\n')})  # fmt: skip
    assert "summary.json" in stale_outputs(root)
    run = load_run(root)
    assert run.summary is None and "stale" in run.problems["summary"]
    from interp.cli import main

    assert main(["ls", str(tmp_path)]) == 0


def test_ls_flags_a_stale_run(tmp_path, capsys):
    from interp.cli import main

    root = tmp_path / "run"
    root.mkdir()
    (root / "config.toml").write_text('name = "run"\nseed = 1\n')
    write_json(root / "summary.json", {"config_key": config_key('name = "run"\nseed = 0\n')})
    assert main(["ls", str(tmp_path)]) == 0
    assert "STALE" in capsys.readouterr().out
    assert main(["ls", str(tmp_path / "nowhere")]) == 2


_WAITER = """
import sys, time
from interp.store.stages import RunDir
run = RunDir(sys.argv[1])
t0 = time.time()
st = run.stage("slow", {"a": 1})
print("done" if st.done else "computing", round(time.time() - t0, 2), flush=True)
"""


def test_a_second_process_waits_for_a_stage_being_computed_and_reuses_it(tmp_path):
    run = RunDir(tmp_path)
    st = run.stage("slow", {"a": 1})  # holds the stage's lock until running() ends
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    other = subprocess.Popen([sys.executable, "-c", _WAITER, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True, env=env)  # fmt: skip
    with st.running() as out:
        import time

        time.sleep(3.0)  # the other process is blocked on the lock meanwhile
        (out / "x.txt").write_text("x")
    state, waited = other.communicate(timeout=60)[0].split()
    assert state == "done" and float(waited) > 1.0


def test_a_local_model_is_keyed_by_its_weights_not_its_path(tmp_path, monkeypatch):
    from interp.lm.models import describe

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    first = describe(str(model))
    assert describe(str(model)) == first  # the second call reads the size+mtime cache
    (model / "model.safetensors").write_bytes(b"\1" * 64)  # same path and size, new weights
    assert describe(str(model))["weights"] != first["weights"]


def test_a_damaged_model_cache_is_detected(tmp_path, monkeypatch):
    from interp.lm.checkpoints import _verify_cache
    from interp.store.stages import checksums, file_sizes

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "smol"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"\0" * 64)
    assert _verify_cache(target) is not None  # no manifest: converted by an older interp
    write_json(target / "manifest.json", {"checksums": checksums(target), "sizes": file_sizes(target)})
    assert _verify_cache(target) is None
    (target / "model.safetensors").write_bytes(b"\0" * 32)
    assert "size" in _verify_cache(target)
    (target / "model.safetensors").write_bytes(b"\2" * 64)
    assert "sha256" in _verify_cache(target)
