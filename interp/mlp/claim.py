"""The paper's MLP claim as a decision rule on per-seed accuracies (torch-free: the hypothesis
script and the unit tests share it)."""

from __future__ import annotations

from typing import Any

from interp.stats import t_interval


def claim_check(
    same: list[float], cross: list[float], chance: float, band: float = 0.05
) -> dict[str, Any]:
    """The paper's MLP claim as a decision on per-seed accuracies of aux-only students:
    same-init well above chance (its 95% t-interval entirely above chance + band) and
    cross-init at chance (its interval inside chance +- band).

    result: "supported" when both hold; "not supported" when the data exclude one of them
    (same-init interval entirely below chance + band, or cross-init interval entirely outside
    the band); "inconclusive" otherwise."""
    s, c = t_interval(same), t_interval(cross)
    same_above = s.lo > chance + band
    cross_at_chance = chance - band <= c.lo and c.hi <= chance + band
    same_not_above = s.hi < chance + band
    cross_off_chance = c.lo > chance + band or c.hi < chance - band
    if same_above and cross_at_chance:
        result = "supported"
    elif same_not_above or cross_off_chance:
        result = "not supported"
    else:
        result = "inconclusive"
    return {
        "result": result,
        "same": {"mean": s.mean, "lo": s.lo, "hi": s.hi, "n": s.n},
        "cross": {"mean": c.mean, "lo": c.lo, "hi": c.hi, "n": c.n},
        "chance": chance,
        "band": band,
    }
