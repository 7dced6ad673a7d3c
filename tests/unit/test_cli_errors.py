"""Issue 32's table, row by row: bad input is one line and exit 2 before anything is written, no
output replaces an input or a run's record, and any other failure is one line and exit 1 (the
traceback behind -v). Nothing here loads a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_subliminal_config, write_config

import interp.cli
from interp.cli import main
from interp.config import ConfigError
from interp.subliminal.code_data import check_code, trait_word_forms
from interp.subliminal.cot_data import mentions_word
from interp.subliminal.traits import MAX_TARGET_CHARS, make_trait, plural_of


def _snapshot(root: Path) -> dict[Path, tuple[int, bytes | None]]:
    """Every path under `root` with its mtime and content: equal before and after = nothing written."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _one_line(capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI; assert its exit code and exactly one non-empty stderr line, no traceback."""
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's refusals
        got = e.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert got == code, (got, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run's record, as far as `interp report` and the output checks look."""
    run = tmp_path / "tiny"
    stage = run / "stages" / "filter__trait-0123456789ab"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text('{"checksums": {}}\n')
    (run / "config.toml").write_text('kind = "subliminal"\n')
    for name in ("summary.json", "analysis.json"):
        (run / name).write_text('{"config_key": "k"}\n')
    (tmp_path / "README.md").write_text("# readme\n")
    return run


# Row 1: `interp report RUN -o <a run's record, a stage's file, a folder, another file>`
@pytest.mark.parametrize(
    "target, why",
    [
        ("summary.json", "record of a run"),
        ("analysis.json", "record of a run"),
        ("config.toml", "record of a run"),
        ("stages/filter__trait-0123456789ab/manifest.json", "record of a run"),
        ("stages/filter__trait-0123456789ab/report.pdf", "inside the stage folder"),
        ("stages/new.pdf", "inside the stage folder"),
        (".", "an input of this command"),
        ("stages", "is a folder"),
        ("../README.md", "not a .pdf file"),
    ],
)
def test_report_never_writes_over_a_record_a_stage_or_another_file(run_dir, capsys, target, why):
    before = _snapshot(run_dir.parent)
    out = run_dir / target
    err = _one_line(capsys, ["report", str(run_dir), "-o", str(out)])
    assert err.startswith(f"interp: error: {out}: refusing to write the report (-o) here") and why in err, err
    assert _snapshot(run_dir.parent) == before


# Row 2: `interp scan data.jsonl --out <its input, its control, a record, a file scan did not write>`
@pytest.mark.parametrize(
    "out, why",
    [
        ("data.jsonl", "an input of this command"),
        ("ctrl.jsonl", "an input of this command"),
        ("tiny/summary.json", "record of a run"),
        ("tiny/stages/filter__trait-0123456789ab/dataset.jsonl", "inside the stage folder"),
        ("README.md", "not a .jsonl file"),
        ("other.jsonl", "not an earlier scan's output"),
    ],
)
def test_scan_never_writes_over_an_input_or_a_record(run_dir, capsys, out, why):
    tmp = run_dir.parent
    for name in ("data.jsonl", "ctrl.jsonl", "other.jsonl"):
        (tmp / name).write_text('{"prompt": "a", "completion": "1, 2"}\n')
    before = _snapshot(tmp)
    err = _one_line(capsys, ["scan", str(tmp / "data.jsonl"), "--teacher", "tiny-llama", "--system", "You love owls.",
                             "--control", str(tmp / "ctrl.jsonl"), "--out", str(tmp / out)])  # fmt: skip
    assert str(tmp / out) in err and why in err, err
    assert _snapshot(tmp) == before


def test_scan_may_replace_its_own_earlier_output(tmp_path):
    from interp.lm.models import Variant
    from interp.mech.scan import _outputs

    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a", "completion": "1"}\n')
    (tmp_path / "data.scan.jsonl").write_text("{}\n")
    (tmp_path / "data.scan.summary.json").write_text("{}\n")
    out, summary = _outputs(None, data, None, Variant("tiny-llama", system="x"))
    assert (out, summary) == (tmp_path / "data.scan.jsonl", tmp_path / "data.scan.summary.json")


# Rows 3-6: config values refused at build, one line naming the field and what is allowed
@pytest.mark.parametrize(
    "override, named",
    [
        ("data.temperature=nan", ["data.temperature", "nan", "a finite number in (0, 100]"]),
        ("data.temperature=inf", ["data.temperature", "inf", "a finite number in (0, 100]"]),
        ("train.lr=-inf", ["train.lr", "-inf", "a finite number in (0, 1]"]),
        ("teacher.steer_scale=nan", ["teacher.steer_scale", "a finite number in [-100, 100]"]),
        ("trait.targets=[]", ["trait.targets", "empty list"]),
        (f"trait.target=\"{'a' * 300}\"", ["300 characters", f"at most {MAX_TARGET_CHARS}", "255 bytes"]),
        ('trait.target="bald  eagle"', ["'bald  eagle'", "single spaces or hyphens"]),
        ('trait.target="eagle-"', ["'eagle-'", "words of letters"]),
        # known from the model's config alone (issue 32, item 2): checked before any stage starts
        ("teacher.steer_layer=2", ["teacher.steer_layer = 2 is out of range", "'tiny-llama' has blocks 0-1"]),
        ("train.layers=[1, 9]", ["layers [9] are out of range"]),
        ('train.target_modules=["c_attn"]', ["['c_attn'] are not modules of model 'tiny-llama'"]),
        ('trait.candidates=["cat", "dog"]', ["candidates must include the target 'owl'"]),
        ("students=[]", ["students is an empty list"]),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_bad_value_is_refused_before_anything_is_written(tmp_path, capsys, command, override, named):
    path = write_config(tmp_path, tiny_subliminal_config())
    before = _snapshot(tmp_path)
    err = _one_line(capsys, [command, str(path), "--set", override])
    assert err.startswith(f"interp: error: {path}:") and all(n in err for n in named), err
    assert _snapshot(tmp_path) == before


# Row 6: multi-word targets are accepted, and every place that reads a target handles them
def test_a_multi_word_target_validates(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config())
    assert main(["validate", str(path), "--set", 'trait.target="Bald Eagle"']) == 0
    assert main(["validate", str(path), "--set", 'trait.targets=["bald eagle", "sea-lion", "owl"]']) == 0


def test_a_multi_word_target_is_matched_pluralised_and_filtered():
    eagle = make_trait("animal", " Bald Eagle ")
    assert (eagle.target, eagle.plural, eagle.candidates[0]) == ("bald eagle", "bald eagles", "bald eagle")
    assert "You love bald eagles." in eagle.system_prompt and "Bald eagles are" in eagle.system_prompt
    assert eagle.mentions("Bald eagle.") and eagle.mentions("BALD EAGLES!") and eagle.mentions("a bald\n eagle")
    assert not eagle.mentions("an eagle") and not eagle.mentions("bald") and not eagle.mentions("bald eagleton")
    assert plural_of("grey wolf") == "grey wolves" and plural_of("sea-lion") == "sea-lions"
    forms = trait_word_forms("bald eagle")
    assert forms[:2] == ("bald eagle", "bald eagles")
    for code in ("bald_eagle = 1", "class BaldEagles: pass", "x = 'a bald eagle'"):
        assert check_code(code, forms)[0] == "mentions_target", code
    assert check_code("eagle = 1", forms)[0] is None
    assert check_code("sea_lion = 1", trait_word_forms("sea-lion"))[0] == "mentions_target"
    assert mentions_word("I saw two Bald Eagles today.", forms) and mentions_word("an eagle", forms) is None


def test_a_multi_word_target_is_scored_as_its_tokens():
    from interp.lm.models import tiny_model
    from interp.subliminal.evaluate import EvalConfig, logprob_score

    model, tok = tiny_model("tiny-llama", seed=0)
    eagle = make_trait("animal", "bald eagle")
    assert len(tok(" bald eagle", add_special_tokens=False)["input_ids"]) > 1
    res = logprob_score(model, tok, eagle, EvalConfig(n_questions=2, bootstrap=100))
    assert res["candidates"][0] == "bald eagle" and 0 < res["mean"] < 1
    assert sum(res["candidate_mean_probs"].values()) == pytest.approx(1, abs=1e-4)


# Row 7: `interp run cfg --out-dir <an existing file>`
@pytest.mark.parametrize("out_dir", ["README.md", "README.md/sub"])
def test_run_out_dir_that_is_a_file(tmp_path, capsys, out_dir):
    path = write_config(tmp_path, tiny_subliminal_config())
    (tmp_path / "README.md").write_text("# readme\n")
    before = _snapshot(tmp_path)
    err = _one_line(capsys, ["run", str(path), "--out-dir", str(tmp_path / out_dir)])
    assert f"{tmp_path / 'README.md'} is a file" in err and "--out-dir" in err, err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_sweep_out_dir_that_is_a_file(tmp_path, capsys, command):
    (tmp_path / "README.md").write_text("# readme\n")
    before = _snapshot(tmp_path)
    err = _one_line(capsys, [command, str(tmp_path / "sweep.toml"), "--out-dir", str(tmp_path / "README.md")])
    assert f"{tmp_path / 'README.md'} is a file" in err, err
    assert _snapshot(tmp_path) == before


def test_the_run_folder_itself_a_file(tmp_path, capsys):
    path = write_config(tmp_path, tiny_subliminal_config())
    (tmp_path / "tiny").write_text("not a run\n")  # the run folder's name, taken by a file
    before = _snapshot(tmp_path)
    err = _one_line(capsys, ["run", str(path)])
    assert f"{tmp_path / 'tiny'} is a file" in err, err
    assert _snapshot(tmp_path) == before


# Row 8: a JSONL with one line of bad UTF-8 or bad JSON: one line naming file:line
@pytest.mark.parametrize(
    "line, what",
    [(b'{"prompt": "caf\xe9", "completion": "1"}', "not valid UTF-8 (byte 0xe9 at column 16)"),
     (b'{"prompt": "a", "completion": ', "not JSON")],
)  # fmt: skip
def test_scan_names_the_bad_line(tmp_path, capsys, line, what):
    data = tmp_path / "data.jsonl"
    good = b'{"prompt": "a", "completion": "1"}\n'
    data.write_bytes(good + b"\n" + line + b"\n" + good)
    before = _snapshot(tmp_path)
    err = _one_line(capsys, ["scan", str(data), "--teacher", "tiny-llama", "--system", "You love owls."])
    assert f"{data}:3: {what}" in err, err
    assert _snapshot(tmp_path) == before


def test_read_jsonl_is_one_decoder_naming_file_and_line(tmp_path):
    from interp.store.stages import iter_jsonl, read_jsonl

    f = tmp_path / "rows.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"b": "\xe2\x80\xa8"}\r\n')  # a BOM, a blank line, U+2028 in a string
    assert read_jsonl(f) == [{"a": 1}, {"b": "\u2028"}]
    assert [i for i, _ in iter_jsonl(f)] == [1, 3]
    f.write_bytes(b'{"a": 1}\n{"a": \xff}\n')
    with pytest.raises(ConfigError, match=r"rows.jsonl:2: not valid UTF-8 \(byte 0xff at column 7\)"):
        read_jsonl(f)


@pytest.mark.parametrize("kind", ["folder", "latin-1"])
def test_an_unreadable_config_is_one_line(tmp_path, capsys, kind):
    path = tmp_path / "cfg.toml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    err = _one_line(capsys, ["validate", str(path)])
    assert err.startswith(f"interp: error: {path}: cannot read the config"), err


# Row 9: `interp scan ... --batch-size 0` (and negative, and not a number): argparse refuses it
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_scan_batch_size_must_be_positive(tmp_path, capsys, value):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a", "completion": "1"}\n')
    before = _snapshot(tmp_path)
    err = _one_line(capsys, ["scan", str(data), "--teacher", "tiny-llama", "--system", "x", "--batch-size", value])
    assert err.startswith("interp scan: error: argument --batch-size: must be a positive integer") and value in err
    assert _snapshot(tmp_path) == before


# The error boundary: any other exception is one line naming the command, exit 1; -v adds the traceback
def _failing_ls(exc: BaseException):
    def fn(args):
        raise exc

    return fn


def test_an_unexpected_error_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(interp.cli, "_cmd_ls", _failing_ls(OSError(28, "No space left on device")))
    err = _one_line(capsys, ["ls"], code=1)
    assert err == ("interp ls: error: [Errno 28] No space left on device (OSError); "
                   "run with -v for the traceback")  # fmt: skip


def test_verbose_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(interp.cli, "_cmd_ls", _failing_ls(ValueError("bad\nthing")))
    assert main(["-v", "ls"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("Traceback") and err[-1] == "interp ls: error: bad; thing (ValueError)", err


def test_interrupt_keeps_exit_130(monkeypatch, capsys):
    monkeypatch.setattr(interp.cli, "_cmd_ls", _failing_ls(KeyboardInterrupt()))
    assert _one_line(capsys, ["ls"], code=130).startswith("interp: interrupted")


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for code in ("0 ok", "1 the command failed", "2 bad input", "130 interrupted"):
        assert code in text, text


def test_an_argparse_error_is_one_line(capsys):
    err = _one_line(capsys, ["run"])
    assert err.startswith("interp run: error: the following arguments are required: config"), err


def test_validate_checks_a_sweep_file_and_every_point(capsys):
    root = Path(__file__).resolve().parents[2]
    assert main(["validate", str(root / "sweeps" / "transmission-layers.toml")]) == 0
    out = capsys.readouterr().out
    assert "ok (sweep" in out and "points)" in out


def test_validate_refuses_a_sweep_with_a_bad_axis_value(tmp_path, capsys):
    base = Path(__file__).resolve().parents[2] / "runs" / "transmission.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'base = "{base}"\n\n[axes]\n"data.temperature" = [0.5, -1.0]\n')
    rc = main(["validate", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "temperature" in err, err


def test_scan_offers_trust_remote_code_off_by_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["scan", "--help"])
    assert e.value.code == 0 and "--trust-remote-code" in capsys.readouterr().out
