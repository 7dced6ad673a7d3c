"""What reports and hypothesis scripts share: loading a finished run, the one number format,
small tests over units, and the verdict line.

Everything here reads artifacts only (summary.json, config.toml, analysis.json, stage
manifests and outputs); a missing or unreadable file comes back as None with a reason, so
callers can say what is missing instead of failing.

The verdict line (exactly one per script, the last line of stdout):
  VERDICT hypothesis=<id> result=<supported|not supported|inconclusive|not testable>
          statistic=<name>:<value> effect=<value> ci=[<lo>, <hi>] p=<value> n=<int>
(one line; undefined numbers are written `nan`).
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.fmt import fmt, fmt_ci, fmt_est  # noqa: F401  (re-exported: scripts import them from here)
from interp.stages import stale_outputs
from interp.stats import Comparison, paired_t, sign_flip_p, welch, welch_from_stats  # noqa: F401  (re-exported)

RESULTS = ("supported", "not supported", "inconclusive", "not testable")


# ---------------------------------------------------------------- numbers


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
    for name, why in stale_outputs(root).items():
        if name.removesuffix(".json") in problems:  # unreadable: already said
            continue
        problems[name.removesuffix(".json")] = f"{name} is stale: {why}"
        if name == "summary.json":
            summary = None
        elif name == "analysis.json":
            analysis = None
    return Run(root, summary, config, analysis, problems)


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


# ---------------------------------------------------------------- tests over units


def decide(lo: float, hi: float, direction: int = 1) -> str:
    """supported: the CI excludes 0 in the predicted direction; not supported: it excludes 0
    the other way; inconclusive: it contains 0 (or is undefined)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if direction * lo > 0 and direction * hi > 0:
        return "supported"
    if direction * lo < 0 and direction * hi < 0:
        return "not supported"
    return "inconclusive"


# ---------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    hypothesis: str
    result: str
    statistic_name: str = "none"
    statistic: float | None = None
    effect: float | None = None
    lo: float | None = None
    hi: float | None = None
    p: float | None = None
    n: int = 0
    reason: str = ""

    def __post_init__(self) -> None:
        if self.result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, got {self.result!r}")

    def line(self) -> str:
        v = lambda x: fmt(x, missing="nan")  # noqa: E731  (the line is parsed; no "n/a")
        return (
            f"VERDICT hypothesis={self.hypothesis} result={self.result} "
            f"statistic={self.statistic_name}:{v(self.statistic)} effect={v(self.effect)} "
            f"ci={fmt_ci(self.lo, self.hi, missing='nan')} p={v(self.p)} n={int(self.n)}"
        )


def from_comparison(hypothesis: str, c: Comparison, result: str, reason: str = "") -> Verdict:
    return Verdict(hypothesis, result, c.statistic_name, c.statistic, c.effect, c.lo, c.hi, c.p,
                   c.n, reason)  # fmt: skip


def run_script(hypothesis: str, test: Callable[[list[Run]], Verdict], argv: list[str]) -> int:
    """Entry point of every script: load runs, test, print the verdict last; always exit 0.

    Any failure (no run given, unreadable artifacts, an unexpected schema) becomes a
    "not testable" verdict with its reason, so a batch over many runs never stops halfway."""
    try:
        if not argv:
            raise LookupError("no run directory given")
        runs = [load_run(a) for a in argv]
        for r in runs:
            if not r.root.is_dir():
                raise LookupError(f"{r.root} is not a directory")
        verdict = test(runs)
    except Exception as e:  # noqa: BLE001 - reported as the verdict's reason, by design
        verdict = Verdict(hypothesis, "not testable", reason=f"{type(e).__name__}: {e}")
    if verdict.reason:
        print(f"reason: {verdict.reason}")
    sys.stdout.flush()
    print(verdict.line())
    return 0
