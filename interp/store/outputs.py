"""Output paths checked before anything is written: no command writes over its own input, a run's
record (config, manifest, summary, analysis, sweep.json) or a file inside a stage folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from interp.config import ConfigError
from interp.store.runfolder import RUN_OUTPUTS

# The files that make a folder the record of a run, a stage or a sweep: never another command's output.
RECORD_NAMES = frozenset({"config.toml", "manifest.json", "sweep.json", *RUN_OUTPUTS})


def _stage_holding(path: Path) -> Path | None:
    """The stage folder `path` is inside (a folder with a manifest.json, or anything under a run's
    `stages/`), if any."""
    for parent in path.parents:
        if (parent / "manifest.json").is_file():
            return parent
        if parent.name == "stages" and (parent.parent / "config.toml").is_file():
            return parent
    return None


def check_output(path: str | Path, flag: str, *, inputs: Iterable[str | Path | None] = (),
                 suffixes: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """`path` as a command's output file, or one ConfigError naming it and why not: it would
    replace one of `inputs`, a record file (`RECORD_NAMES`), a file in a stage folder or a folder,
    or it exists with a suffix other than `suffixes` (a PDF over a README)."""
    p = Path(path)
    real = p.resolve()
    why = None
    if any(real == Path(i).resolve() for i in inputs if i is not None):
        why = "it is an input of this command"
    elif real.name in RECORD_NAMES or p.name in RECORD_NAMES:
        why = f"a {p.name} is the record of a run, never overwritten"
    elif (stage := _stage_holding(real)) is not None:
        why = f"it is inside the stage folder {stage}, whose files its manifest vouches for"
    elif p.is_dir():
        why = "it is a folder"
    elif p.exists() and suffixes and p.suffix.lower() not in suffixes:
        why = f"it exists and is not a {' or '.join(suffixes)} file"
    if why is not None:
        raise ConfigError(f"{path}: refusing to write {flag} here: {why}")
    return p


def check_out_dir(path: str | Path | None, flag: str) -> None:
    """One ConfigError when `path` (a folder to create or use) is, or is inside, an existing file."""
    if path is None:
        return
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ConfigError(f"{path}: {flag} must be a folder; {q} is a file")
            return
