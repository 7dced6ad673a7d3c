"""One home for how numbers and tables are printed (reports, verdicts, the CLI)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fmt(x: Any, digits: int = 4, missing: str = "n/a") -> str:
    """The single number format of reports and verdicts: `digits` significant digits.

    Tests compare report text against `fmt(summary value)`, so every number a report or a
    verdict prints goes through here."""
    if x is None:
        return missing
    if isinstance(x, bool | str):
        return str(x)
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"  # also -0.0: a sign on zero reads as an effect
    return f"{x:.{digits}g}"


def fmt_ci(lo: Any, hi: Any, missing: str = "n/a") -> str:
    return f"[{fmt(lo, missing=missing)}, {fmt(hi, missing=missing)}]"


def fmt_est(est: dict[str, Any] | None, missing: str = "n/a") -> str:
    """`mean [lo, hi]` from a {mean, lo, hi[, n]} dict; `mean (n=1, no CI)` for one value."""
    if not est or est.get("mean") is None:
        return missing
    if est.get("n") == 1:  # one seed or one batch: there is no interval to show
        return f"{fmt(est['mean'])} (n=1, no CI)"
    return f"{fmt(est.get('mean'))} {fmt_ci(est.get('lo'), est.get('hi'))}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain fixed-width table from a list of dicts (columns from the first row)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


def _cell(v: Any) -> str:
    return fmt(v, missing="-")
