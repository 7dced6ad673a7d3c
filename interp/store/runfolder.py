"""A run folder's own files beside its stages: the config it was made from (`start_run`), its
outputs (`write_output`), and which outputs are stale (`stale_outputs`). A second config started
on the folder moves the first one's files to `superseded/` under the folder's lock, and each run
writes its outputs beside its own config, so two configs never lose each other's summaries.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from interp.store.locks import HeldLock, fsync_dir
from interp.store.stages import stable_hash, write_atomic, write_json

log = logging.getLogger("interp")

# The files a run folder holds beside its stages, all derived from one config.
RUN_OUTPUTS = ("summary.json", "analysis.json")


def config_key(config_toml: str) -> str:
    """Identity of a run's resolved config (the text of its config.toml, parsed)."""
    import tomllib

    return stable_hash(tomllib.loads(config_toml), 16)


def stale_outputs(root: Path) -> dict[str, str]:
    """{file: why} for each of a run's outputs not made from the config.toml beside it."""
    cfg = Path(root) / "config.toml"
    if not cfg.exists():
        return {}
    try:
        key = config_key(cfg.read_text())
    except ValueError as e:
        return {"config.toml": f"not valid TOML ({e})"}
    out = {}
    for name in RUN_OUTPUTS:
        f = Path(root) / name
        if not f.exists():
            continue
        try:
            got = json.loads(f.read_text()).get("config_key")
        except (OSError, ValueError, AttributeError):
            out[name] = "unreadable"
            continue
        if got is not None and got != key:  # None: written before runs carried their key
            out[name] = f"made from config {got}, config.toml is {key}"
    return out


def run_lock(root: Path) -> HeldLock:
    """The lock of a run folder's config.toml and outputs (not of its stages: those have theirs)."""
    return HeldLock(Path(root) / ".run.lock", f"run folder {root}")


def _superseded_folder(root: Path) -> Path:
    """A new, uniquely named `superseded/<time>-<pid>-<random>/` (two in one second never meet)."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    dest = root / "superseded" / stamp
    dest.mkdir(parents=True)
    return dest


def _supersede(root: Path) -> None:
    moved = [n for n in ("config.toml", *RUN_OUTPUTS) if (root / n).exists()]
    dest = _superseded_folder(root)
    for n in moved:
        (root / n).replace(dest / n)
    fsync_dir(dest)
    fsync_dir(root)
    log.info("run %s: the config changed; moved the previous %s to %s", root.name, ", ".join(moved), dest)


def start_run(root: Path, config_toml: str) -> str:
    """Make `root` hold `config_toml`; returns its key.

    When the folder held a run of another config, its summary/analysis and config.toml are
    moved to `superseded/<time>-<pid>-<random>/` before anything else is written (stages stay:
    they are keyed and shared), so no output of the old config can sit beside the new config.
    The look and the move happen under the folder's lock (`run_lock`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = config_key(config_toml)
    with run_lock(root):
        old = root / "config.toml"
        if old.exists() and old.read_text() != config_toml:
            _supersede(root)
        write_atomic(old, config_toml)
    return key


def write_output(root: Path, config_toml: str, name: str, obj: Any) -> Path:
    """Write a run's output (`summary.json`, ...) beside the config it was made from; its path.

    Normally that is `root`. When another config was started on the folder while this run
    went on (`start_run` moved this run's config.toml to superseded/), the output goes to the
    superseded folder holding this config (a new one with it, if none does), never beside the
    other config and never over its output: both runs keep their summaries.
    """
    root = Path(root)
    with run_lock(root):
        here = root / "config.toml"
        dest = root
        if not here.exists():
            write_atomic(here, config_toml)
        elif here.read_text() != config_toml:
            homes = [d for d in sorted((root / "superseded").glob("*/"), reverse=True)
                     if (d / "config.toml").is_file() and (d / "config.toml").read_text() == config_toml]  # fmt: skip
            if homes:
                dest = homes[0]
            else:
                dest = _superseded_folder(root)
                write_atomic(dest / "config.toml", config_toml)
            log.warning("run %s: another config was started on this folder meanwhile; this run's %s "
                        "goes beside its own config in %s", root.name, name, dest)  # fmt: skip
        write_json(dest / name, obj)
    return dest / name


