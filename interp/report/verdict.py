"""The words a report's first page puts on a contrast, from its numbers alone.

The rule lives here, next to the sentence that states it in the report, so the two cannot
drift apart; `tests/unit/test_report_verdict.py` pins each threshold from both sides.
"""

from __future__ import annotations

import math

P_TRANSMITS = 0.01  # strict: below it, and the interval above 0, reads as transmission
P_NULL = 0.05  # at or above it, with an interval that reaches 0, reads as no transmission

TRANSMITS = "transmits"
NULL = "no detectable transmission"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"

VERDICT_RULE = (
    f"'{TRANSMITS}' when gamma > 0, p < {P_TRANSMITS:g} and the interval shown (if any) lies "
    "above 0; "
    f"'{NULL}' when p >= {P_NULL:g} and the interval (if any) does not lie above 0; "
    f"'{INCONCLUSIVE}' otherwise"
)

ABOVE, BELOW, WITHIN = (
    "above the control",
    "below the control",
    "not distinguishable from the control",
)

CONTROL_RULE = (
    f"'{ABOVE}' when the interval of own-target shift minus the control students' shift lies "
    f"above 0, '{BELOW}' when it lies below 0, '{WITHIN}' when it contains 0"
)


def _number(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def verdict(gamma: float | None, ci: tuple[float, float] | None, p: float | None) -> str:
    """One of TRANSMITS, NULL, INCONCLUSIVE (or NOT_TESTED without gamma and p).

    Args:
        gamma: own-target minus other-target shift (nats).
        ci: (lo, hi) of gamma, or None where no interval exists (one seed and no per-target one).
        p: one-sided permutation p of gamma > 0.
    """
    if not (_number(gamma) and _number(p)):
        return NOT_TESTED
    above = ci is None or ci[0] > 0
    if p < P_TRANSMITS and gamma > 0 and above:
        return TRANSMITS
    # an interval above 0 that the permutation test cannot confirm is not a null either
    if p >= P_NULL and (ci is None or ci[0] <= 0):
        return NULL
    return INCONCLUSIVE


def control_verdict(ci: tuple[float, float] | None) -> str | None:
    """ABOVE, BELOW or WITHIN for an interval of own-target minus control shift; None without one."""
    if ci is None or not (_number(ci[0]) and _number(ci[1])):
        return None
    if ci[0] > 0:
        return ABOVE
    if ci[1] < 0:
        return BELOW
    return WITHIN
