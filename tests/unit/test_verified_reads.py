"""A run's files are checked against their manifests before `interp analyze`, `interp report` or a
hypothesis script reads any of them: a truncated, edited or missing stage file is one line naming
it (exit 2), never a result computed from it. The run is written by the store itself (RunDir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.cli import main
from interp.config import ConfigError
from interp.hypothesis import Verdict, run_script
from interp.store.stages import RunDir, write_json
from interp.store.verified import verify_run

ROWS = "".join(json.dumps({"prompt": f"p{i}", "completion": f"{i}, {i + 1}"}) + "\n" for i in range(20))


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path]:
    """(a finished run folder, its dataset file): one stage written through the store, a config
    and a summary naming the stage as used."""
    root = tmp_path / "tiny"
    rd = RunDir(root)
    st = rd.stage("filter/trait", {"n": 20})
    with st.running() as out:
        (out / "dataset.jsonl").write_text(ROWS)
        (out / "info.json").write_text('{"kept": 20}\n')
    (root / "config.toml").write_text('kind = "subliminal"\nname = "tiny"\n')
    write_json(root / "summary.json", {"name": "tiny", "provenance": {"stages_used": [st.path.name]}})
    return root, st.path / "dataset.jsonl"


def _one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    return err[0]


def _truncate(f: Path) -> str:
    f.write_bytes(f.read_bytes()[:-7])
    return "has size"


def _edit(f: Path) -> str:  # same size, one character changed: only the sha256 tells
    data = f.read_bytes()
    f.write_bytes(data.replace(b"p3", b"p4", 1))
    return "does not match its sha256"


def _delete(f: Path) -> str:
    f.unlink()
    return "is missing"


@pytest.mark.parametrize("damage", [_truncate, _edit, _delete])
@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_damaged_stage_file_stops_analyze_and_report(run, capsys, damage, command):
    root, data = run
    why = damage(data)
    before = sorted(p.name for p in root.rglob("*"))
    err = _one_line(capsys, [command, str(root)])
    assert err.startswith(f"interp: error: {data} {why}"), err
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written: no analysis.json, no PDF


def test_an_intact_run_passes_and_each_damage_is_named(run):
    root, data = run
    assert verify_run(root) == root
    manifest = data.parent / "manifest.json"
    manifest.write_text(manifest.read_text()[:-20])
    with pytest.raises(ConfigError, match=rf"^{manifest} unreadable \(JSONDecodeError\)"):
        verify_run(root)


def test_a_stage_the_summary_used_must_be_there(run):
    root, data = run
    folder = data.parent
    folder.rename(folder.with_name(folder.name + ".partial"))  # as a killed recompute leaves it
    with pytest.raises(ConfigError, match=rf"^{folder}: missing, though summary.json lists it as used"):
        verify_run(root)
    (root / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"summary.json: unreadable \(JSONDecodeError"):
        verify_run(root)


def test_a_hypothesis_script_refuses_a_damaged_run(run, capsys):
    root, data = run

    def test(runs):  # the script's own test: reached only through a verified run
        return Verdict("h", "supported", n=len(runs))

    assert run_script("h", test, [str(root)]) == 0
    assert capsys.readouterr().out.strip().endswith("result=supported statistic=none:nan effect=nan ci=[nan, nan] p=nan n=1")
    _truncate(data)
    assert run_script("h", test, [str(root)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"reason: ConfigError: {data} has size") and "result=not testable" in out[-1], out
