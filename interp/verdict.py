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

import itertools
import json
import math
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from interp.fmt import fmt, fmt_ci, fmt_est  # noqa: F401  (re-exported: scripts import them from here)
from interp.stages import stale_outputs

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


@dataclass(frozen=True)
class Comparison:
    """An effect with its CI and a test: difference a - b (or a mean of paired differences)."""

    statistic_name: str
    statistic: float
    effect: float
    lo: float
    hi: float
    p: float
    n: int


def welch(a: Sequence[float], b: Sequence[float], ci: float = 0.95) -> Comparison:
    """Welch t-test and Welch-Satterthwaite interval for mean(a) - mean(b)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    m1, m2 = x.mean(), y.mean()
    s1, s2 = x.var(ddof=1) if x.size > 1 else np.nan, y.var(ddof=1) if y.size > 1 else np.nan
    return welch_from_stats(m1, s1, x.size, m2, s2, y.size, ci)


def welch_from_stats(
    m1: float, v1: float, n1: int, m2: float, v2: float, n2: int, ci: float = 0.95
) -> Comparison:
    """As `welch`, from means, variances (ddof=1) and counts; nan where undefined."""
    diff = float(m1 - m2)
    nan = float("nan")
    if n1 < 2 or n2 < 2:
        return Comparison("welch_t", nan, diff, nan, nan, nan, n1 + n2)
    se2 = v1 / n1 + v2 / n2
    if se2 <= 0:  # no spread at all: the difference is exact, the test is undefined
        return Comparison("welch_t", nan, diff, diff, diff, nan, n1 + n2)
    se = math.sqrt(se2)
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + ci / 2, df) * se)
    return Comparison("welch_t", float(t), diff, diff - half, diff + half, p, n1 + n2)


def sign_flip_p(d: Sequence[float], n_perm: int = 20000, seed: int = 0) -> float:
    """Two-sided sign-flip (paired permutation) p-value for mean(d) = 0; exact for n <= 16.

    Assumes the paired differences are symmetric about 0 under the null."""
    x = np.asarray(d, float)
    if x.size == 0 or np.all(x == 0):
        return float("nan") if x.size == 0 else 1.0
    obs = abs(x.mean())
    if x.size <= 16:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=x.size)))
    else:
        signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, x.size))
    null = np.abs((signs * x).mean(axis=1))
    # +1 smoothing for the sampled case so p is never 0; the exact case counts itself already.
    extra = 0 if x.size <= 16 else 1
    return float((np.sum(null >= obs - 1e-15) + extra) / (len(null) + extra))


def paired_t(d: Sequence[float]) -> float:
    x = np.asarray(d, float)
    if x.size < 2 or x.std(ddof=1) == 0:
        return float("nan")
    return float(x.mean() / (x.std(ddof=1) / math.sqrt(x.size)))


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
