"""Every command the README quotes still parses: `interp <cmd> --help` exits 0, the quoted
arguments are accepted by the parser, each config it names validates (sweeps: every point), each
`make` target exists and each `python analyses/...` script is there. Renaming a command, a flag,
a config or a target without updating the README fails here; nothing is run or loaded."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from interp.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _fenced_lines() -> list[str]:
    """Lines of the README's shell blocks (``` without a language), comments cut."""
    lines = []
    for block in re.findall(r"^```[ \t]*\n(.*?)^```", README, re.S | re.M):
        lines += [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def _inline(prefix: str) -> list[str]:
    """Inline code spans starting with `prefix`, whitespace collapsed (a span may wrap)."""
    return [" ".join(s.split()) for s in re.findall(r"`(" + prefix + r" [^`]+)`", README)]


def _commands(prefix: str) -> list[str]:
    found = [line for line in _fenced_lines() if line.startswith(prefix + " ")] + _inline(prefix)
    return sorted(set(found))


INTERP = _commands("interp")
MAKE = _commands("make")
SCRIPTS = _commands("python")


def test_the_readme_quotes_commands():
    """The extraction itself works (otherwise every parametrised test below is vacuous)."""
    assert {"interp run runs/quickstart.toml", "interp validate runs/*.toml"} <= set(INTERP), INTERP
    assert {"make demo", "make test"} <= set(MAKE) and SCRIPTS, (MAKE, SCRIPTS)
    subcommands = {c.split()[1] for c in INTERP}
    assert {
        "run",
        "analyze",
        "report",
        "validate",
        "ls",
        "plan",
        "sweep",
        "bench",
        "scan",
    } <= subcommands


def _argv(cmd: str) -> list[str]:
    # `[--flag VALUE]` in a synopsis is an optional argument: quoted with it, it must parse too
    return shlex.split(re.sub(r"\[(--[^\]]+)\]", r"\1", cmd))[1:]


@pytest.mark.parametrize("cmd", INTERP)
def test_each_interp_command_parses(cmd, capsys):
    argv = _argv(cmd)
    with pytest.raises(SystemExit) as e:
        main([argv[0], "--help"])
    assert e.value.code == 0, cmd
    assert f"interp {argv[0]}" in capsys.readouterr().out
    if len(argv) > 1:  # a full synopsis (not just `interp report` in a sentence): its flags exist
        args = build_parser().parse_args([_expand(a)[0] if "*" in a else a for a in argv])
        assert args.fn is not None


def _expand(arg: str) -> list[str]:
    paths = sorted(glob.glob(str(ROOT / arg)))
    assert paths, f"{arg}: no such file"
    return paths


def _configs() -> list[tuple[str, str]]:
    """(command, config file) for each runs/ or sweeps/ TOML the README's commands name."""
    out = []
    for cmd in INTERP:
        for a in _argv(cmd):
            if re.fullmatch(r"(runs|sweeps)/[^ ]*\.toml", a):  # a missing file fails its test below
                paths = sorted(glob.glob(str(ROOT / a))) or [str(ROOT / a)]
                out += [(cmd, str(Path(p).relative_to(ROOT))) for p in paths]
    return sorted(set(out))


@pytest.mark.parametrize(("cmd", "config"), _configs())
def test_each_quoted_config_validates(cmd, config, capsys):
    if config.startswith("sweeps/"):
        from interp.sweep.spec import load_sweep

        assert load_sweep(ROOT / config).points, config  # every point is built and checked
        return
    sets = [a for a in re.findall(r"--set (\S+)", cmd)]
    argv = ["validate", str(ROOT / config)] + [x for s in sets for x in ("--set", s)]
    assert main(argv) == 0, capsys.readouterr().err
    assert ": ok (" in capsys.readouterr().out


def test_the_readme_names_every_config_it_runs():
    assert {c for _, c in _configs()} >= {"runs/quickstart.toml", "runs/mlp-aux-logits.toml",
                                          "sweeps/transmission-grid.toml"}  # fmt: skip


def test_each_make_target_exists():
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), re.M))
    for cmd in MAKE:
        target = cmd.split()[1]
        assert target in targets, f"README quotes `{cmd}`; Makefile targets: {sorted(targets)}"


def test_each_hypothesis_script_exists():
    import importlib.util

    for cmd in SCRIPTS:
        args = shlex.split(cmd)
        if args[1] == "-m":  # `python -m interp.sweep.lora_artifact ...`: the module is there
            assert importlib.util.find_spec(args[2]) is not None, cmd
            continue
        script = args[1]
        if "<" in script:  # a placeholder such as analyses/<hypothesis>.py
            continue
        assert (ROOT / script).is_file(), cmd


def test_the_figure_ids_are_the_registrys():
    from interp.registry import FIGURE_IDS

    listed = re.search(r"picks the figures \(ids: (.*?)\)", README, re.S)
    assert listed, "README: the [report] figure list moved"
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(FIGURE_IDS)


def test_the_python_version_is_pyprojects():
    required = re.search(
        r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()
    ).group(1)
    versions = set(re.findall(r"Python (\d+\.\d+)\+", README))
    assert versions == {required}, versions
