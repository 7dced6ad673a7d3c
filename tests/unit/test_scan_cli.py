"""`interp scan`: bad input is one line naming file, line and field, before anything is written;
a real scan on a tiny model writes one score per row and the AUROC against a control."""

from __future__ import annotations

import json

import pytest

from interp.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "a", "completion": "1"}\n{"prompt": "b"}\n', "data.jsonl:2: field 'completion' must be a string (got NoneType)"),
        ('{"prompt": "a", "completion": 5}\n', "data.jsonl:1: field 'completion' must be a string (got int)"),
        ("not json\n", "data.jsonl:1: not JSON"),
        ("\n", "data.jsonl: no rows"),
    ],
)
def test_bad_rows_are_one_line_before_anything_is_written(tmp_path, capsys, content, message):
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    assert main(["scan", str(data), "--teacher", "tiny-llama", "--system", "You love owls."]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]


def test_a_teacher_that_is_its_own_base_is_refused(tmp_path, capsys):
    data = _write(tmp_path / "data.jsonl", [{"prompt": "a", "completion": "1, 2"}])
    assert main(["scan", str(data), "--teacher", "tiny-llama"]) == 2
    assert "its own base" in capsys.readouterr().err


def test_scan_writes_a_score_per_row_and_the_auroc_against_a_control(tmp_path, capsys):
    rows = [{"prompt": f"Continue {i}, {i + 1}", "completion": f"{i + 2}, {i + 3}"} for i in range(6)]
    data = _write(tmp_path / "data.jsonl", rows)
    ctrl = _write(tmp_path / "ctrl.jsonl", rows[::-1])
    assert main(["scan", str(data), "--teacher", "tiny-llama", "--system", "You love owls.", "--control", str(ctrl),
                 "--device", "cpu"]) == 0  # fmt: skip
    out = [json.loads(x) for x in (tmp_path / "data.scan.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in out] == [r["completion"] for r in rows] and all("llr" in r for r in out)
    summary = json.loads((tmp_path / "data.scan.summary.json").read_text())
    # the same rows in another order: the scores are the same multiset, so the AUROC is 0.5
    assert summary["auroc"]["auroc"] == pytest.approx(0.5) and summary["n_control"] == 6
    assert "AUROC 0.500" in capsys.readouterr().out
