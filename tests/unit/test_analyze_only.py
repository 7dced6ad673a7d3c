"""`interp analyze --only` names an unknown section in one line before reading anything."""

from __future__ import annotations

from interp.cli import main


def test_an_unknown_section_is_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nowhere"), "--only", "detection,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown section(s) bogus (known: update_alignment," in err
