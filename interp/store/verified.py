"""A finished run read defensively: every stage file checked against its manifest before a
reader (`interp analyze`, `interp report`, the hypothesis scripts) uses any of it.

One function, `verify_run`, raises one line naming the file and the mismatch; the stages' own
check (`verify_folder`: sizes, then sha256) is the one it applies to every stage folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.config import ConfigError
from interp.store.stages import verify_folder

FIX = "rerun `interp run` on its config to recompute what changed"


def _stage_folders(root: Path) -> list[Path]:
    stages = root / "stages"
    if not stages.is_dir():
        return []
    # a ".partial" folder is a stage still being (or never) finished; dot-names are lock files
    return sorted(p for p in stages.iterdir() if p.is_dir() and not p.name.endswith(".partial")
                  and not p.name.startswith("."))  # fmt: skip


def _used_stages(root: Path) -> list[str]:
    """The stage folders the run's summary.json says it used (none when it has no summary)."""
    path = root / "summary.json"
    if not path.exists():
        return []
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {e}); {FIX}") from e
    used = (summary.get("provenance") or {}).get("stages_used") if isinstance(summary, dict) else None
    return [u for u in used if isinstance(u, str)] if isinstance(used, list) else []


def verify_run(run_dir: str | Path) -> Path:
    """`run_dir` if every stage folder in it matches its manifest and every stage its summary
    names is there; otherwise one ConfigError naming the file and what is wrong."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a run folder (no such folder)")
    for name in _used_stages(root):
        if not (root / "stages" / name / "manifest.json").is_file():
            raise ConfigError(f"{root / 'stages' / name}: missing, though summary.json lists it as used; {FIX}")
    for folder in _stage_folders(root):
        problem = verify_folder(folder)
        if problem is not None:
            raise ConfigError(f"{folder}/{problem}; the run's files do not match their manifests: {FIX}")
    return root
