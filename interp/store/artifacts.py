"""A finished run's artifacts as read by every reader (reports, hypothesis scripts, notebooks).

Reads only: summary.json, config.toml, analysis.json, stage manifests and stage outputs. A
missing, unreadable or stale file comes back as None with the reason in `Run.problems`, so a
caller says what is missing instead of failing.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.store.runfolder import stale_outputs

# ---------------------------------------------------------------- loading


def load_json(path: Path) -> tuple[Any, str | None]:
    """(object, None), or (None, reason) when the file is absent or unreadable."""
    if not path.exists():
        return None, f"{path.name} not found in {path.parent}"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"{path.name} unreadable: {e}"


@dataclass
class Run:
    """A run directory's artifacts; any of them may be None (see `problems`)."""

    root: Path
    summary: dict[str, Any] | None
    config: dict[str, Any] | None
    analysis: dict[str, Any] | None
    problems: dict[str, str] = field(default_factory=dict)  # artifact -> why it is absent
    stale: dict[str, str] = field(default_factory=dict)  # output file -> why it is not this config's (`stale_outputs`)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def experiment(self) -> str:
        if self.summary:
            return str(self.summary.get("experiment", "unknown"))
        return str((self.config or {}).get("kind", "unknown"))

    def stage_json(self, rel: str, filename: str) -> tuple[Any, str | None]:
        """A JSON output of the stage folder `rel` (relative to the run, as in artifacts)."""
        return load_json(self.root / rel / filename)

    def manifests(self) -> list[dict[str, Any]]:
        """Manifests of every finished stage folder, with `dir` added, sorted by stage name."""
        out = []
        for p in sorted((self.root / "stages").glob("*/manifest.json")):
            m, _ = load_json(p)
            if isinstance(m, dict):
                out.append({**m, "dir": p.parent.name})
        return sorted(out, key=lambda m: (str(m.get("stage")), str(m.get("started"))))


def load_run(path: str | Path) -> Run:
    root = Path(path)
    problems: dict[str, str] = {}
    summary, why = load_json(root / "summary.json")
    if why:
        problems["summary"] = why
    analysis, why = load_json(root / "analysis.json")
    if why:
        problems["analysis"] = why
    config = None
    cfg_path = root / "config.toml"
    try:
        config = tomllib.loads(cfg_path.read_text())
    except FileNotFoundError:
        problems["config"] = f"config.toml not found in {root}"
    except (OSError, tomllib.TOMLDecodeError) as e:
        problems["config"] = f"config.toml unreadable: {e}"
    # an output of another config than the config.toml beside it is refused, not mixed in
    stale = stale_outputs(root)
    for name, why in stale.items():
        if name.removesuffix(".json") in problems:  # unreadable: already said
            continue
        problems[name.removesuffix(".json")] = f"{name} is stale: {why}"
        if name == "summary.json":
            summary = None
        elif name == "analysis.json":
            analysis = None
    return Run(root, summary, config, analysis, problems, stale)


def analysis_section(run: Run, section: str) -> tuple[dict[str, Any] | None, str | None]:
    """A section of analysis.json, or None and the reason it is absent."""
    if run.analysis is None:
        return None, run.problems.get("analysis", "no analysis.json") + " (run `interp analyze`)"
    sec = run.analysis.get(section)
    if sec:
        return sec, None
    reason = (run.analysis.get("missing") or {}).get(section)
    return None, str(reason) if reason else f"no '{section}' section in analysis.json"


def subliminal_roles(summary: dict[str, Any]) -> dict[str, str]:
    """Which configured student plays which role, from what it is, not from its name:
    same-init = teacher's base on trait data, control = teacher's base on control data,
    cross-model = another base on trait data (the first such, by name)."""
    teacher = summary.get("models", {}).get("teacher", {}).get("model")
    roles: dict[str, str] = {}
    for name, s in sorted(summary.get("students", {}).items()):
        same_base = s.get("model") == teacher
        if s.get("data") == "trait":
            role = "same-init" if same_base else "cross-model"
        else:
            role = "control" if same_base else "cross-control"
        roles.setdefault(role, name)
    return roles
