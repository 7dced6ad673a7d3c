"""What hypothesis scripts share: small tests over units, the decision rule and the verdict line.

Scripts read runs through `interp.store.artifacts` (re-exported here with the number format
and the tests, so a script needs one import).

The verdict line (exactly one per script, the last line of stdout):
  VERDICT hypothesis=<id> result=<supported|not supported|inconclusive|not testable>
          statistic=<name>:<value> effect=<value> ci=[<lo>, <hi>] p=<value> n=<int>
(one line; undefined numbers are written `nan`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from interp.fmt import fmt, fmt_ci, fmt_est  # noqa: F401  (re-exported: scripts import them from here)
from interp.stats import Comparison, paired_t, sign_flip_p, welch  # noqa: F401  (re-exported)
from interp.store.artifacts import Run, analysis_section, load_json, load_run, subliminal_roles  # noqa: F401  (re-exported)
from interp.store.verified import verify_run

RESULTS = ("supported", "not supported", "inconclusive", "not testable")


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


def pop_option(argv: list[str], flag: str, default: str | None = None) -> tuple[str | None, list[str]]:
    """(value of `flag VALUE` in argv or `default`, argv without the pair): a script's option.
    A flag without a value gives "" (the test then says why it is not testable)."""
    if flag not in argv:
        return default, argv
    i = argv.index(flag)
    return (argv[i + 1] if i + 1 < len(argv) else ""), argv[:i] + argv[i + 2 :]


def verdict_of(hypothesis: str, test: Callable[[], Verdict]) -> int:
    """Run `test`, print its reason and verdict line last (any failure: "not testable" with
    why, so a batch over many runs never stops halfway); returns 0."""
    try:
        verdict = test()
    except Exception as e:  # noqa: BLE001 - reported as the verdict's reason, by design
        verdict = Verdict(hypothesis, "not testable", reason=f"{type(e).__name__}: {e}")
    if verdict.reason:
        print(f"reason: {verdict.reason}")
    sys.stdout.flush()
    print(verdict.line())
    return 0


def run_script(hypothesis: str, test: Callable[[list[Run]], Verdict], argv: list[str]) -> int:
    """Entry point of every script: load runs, test, print the verdict last; always exit 0.

    Any failure (no run given, unreadable artifacts, an unexpected schema) becomes a
    "not testable" verdict with its reason, so a batch over many runs never stops halfway."""

    def checked() -> Verdict:
        if not argv:
            raise LookupError("no run directory given")
        runs = [load_run(a) for a in argv]
        for r in runs:
            if not r.root.is_dir():
                raise LookupError(f"{r.root} is not a directory")
            verify_run(r.root)  # its stage files against their manifests, before any is read
        return test(runs)

    return verdict_of(hypothesis, checked)
