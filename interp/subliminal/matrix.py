"""The trait x student matrix: shifts in nats, the transmission effect gamma, and its tests.

Every student is scored on every candidate of the trait's category. A student's *shift* on a
candidate is its log-odds of that candidate (log p against the mean log p of the other
candidates, from the log-prob score) minus the base model's, averaged over questions. With one
teacher per target, gamma = mean own-target shift - mean other-target shift: generic drift (all
students moving toward "elephant") adds equally to both terms and cancels. Its null
distribution comes from permuting the target labels of the students' data (the unit is the
target: seeds of one target share a dataset), and its spread over seeds from a t-interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from jaxtyping import Float
from scipy import stats


def log_odds(logprobs: Float[np.ndarray, "question candidate"]) -> Float[np.ndarray, " candidate"]:
    """Mean over questions of log p(c) - mean_{c' != c} log p(c'), p softmaxed over candidates.

    Log-odds add over questions and seeds better than p(target), and do not saturate.
    """
    return log_odds_per_question(logprobs).mean(axis=0)


def log_odds_per_question(logprobs: Float[np.ndarray, "question candidate"]) -> Float[np.ndarray, "question candidate"]:
    """`log_odds` before the mean over questions (for intervals over questions)."""
    lp = np.asarray(logprobs, dtype=float)
    if lp.ndim != 2 or lp.shape[1] < 2:
        raise ValueError(f"log_odds needs [questions, candidates >= 2] log-probs, got {lp.shape}")
    lsm = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)
    other = (lsm.sum(axis=1, keepdims=True) - lsm) / (lp.shape[1] - 1)
    return lsm - other


def gamma(
    shifts: Float[np.ndarray, "target candidate"], target_idx: Sequence[int]
) -> float:
    """Own-target minus other-target shift, in nats (rows: students of each target, in order).

    `target_idx[i]` is the column of row i's target; "other" ranges over the other targets'
    columns only, so candidates that are nobody's target do not enter.
    """
    s = np.asarray(shifts, dtype=float)
    cols = list(target_idx)
    k = len(cols)
    if s.shape[0] != k or k < 2:
        raise ValueError(f"gamma needs one row per target and >= 2 targets, got {s.shape[0]} rows, {k} targets")
    return float(diagonal_gamma(s[:, cols]))  # [student of target i, shift on target j]


def per_target_gamma(
    shifts: Float[np.ndarray, "target candidate"], target_idx: Sequence[int]
) -> Float[np.ndarray, " target"]:
    """Row i's own-target shift minus its mean shift on the other targets' columns: gamma is
    their mean, so a t-interval over them treats the targets as the units."""
    s = np.asarray(shifts, dtype=float)[:, list(target_idx)]
    k = s.shape[0]
    if s.shape[1] != k or k < 2:
        raise ValueError(f"need one row per target and >= 2 targets, got {s.shape}")
    own = np.diag(s)
    return own - (s.sum(axis=1) - own) / (k - 1)


def diagonal_gamma(c: Float[np.ndarray, "... k k"]) -> np.ndarray:
    """Mean diagonal minus mean off-diagonal over the last two axes (rows i, columns j)."""
    c = np.asarray(c, dtype=float)
    k = c.shape[-1]
    if c.shape[-2] != k or k < 2:
        raise ValueError(f"need square [.., k, k] with k >= 2, got {c.shape}")
    diag = np.trace(c, axis1=-2, axis2=-1) / k
    return diag - (c.sum(axis=(-2, -1)) - diag * k) / (k * (k - 1))


def correlation(
    shifts: Float[np.ndarray, "target candidate"], teacher_shifts: Float[np.ndarray, "target candidate"]
) -> float:
    """Mean over targets of the Pearson correlation, over all candidates, of student and teacher shifts."""
    s, t = np.asarray(shifts, dtype=float), np.asarray(teacher_shifts, dtype=float)
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(s, t)]))


@dataclass(frozen=True)
class MatrixTest:
    """gamma (and the teacher-shift correlation) with permutation p-values over target labels."""

    gamma: float
    p_gamma: float
    correlation: float
    p_correlation: float
    n_targets: int
    n_permutations: int
    exact: bool

    def to_dict(self) -> dict:
        return asdict(self)


def permutation_test(
    shifts: Float[np.ndarray, "target candidate"],
    teacher_shifts: Float[np.ndarray, "target candidate"],
    target_idx: Sequence[int],
    n_resamples: int = 10_000,
    seed: int = 0,
) -> MatrixTest:
    """One-sided permutation tests of gamma > 0 and correlation > 0 over target labels.

    A permutation reassigns which target each student's data came from; exact (all k!
    relabellings) when k! <= n_resamples. With k targets the smallest possible p is 1/k!:
    k = 5 gives 0.0083, k = 6 gives 0.0014.
    """
    s, t = np.asarray(shifts, dtype=float), np.asarray(teacher_shifts, dtype=float)
    cols = np.asarray(target_idx)
    k = len(cols)

    def stat_gamma(order: np.ndarray) -> float:
        return gamma(s[order], cols)

    def stat_corr(order: np.ndarray) -> float:
        return correlation(s[order], t)

    out = {name: label_permutation_p(fn, k, n_resamples, seed)
           for name, fn in (("gamma", stat_gamma), ("corr", stat_corr))}  # fmt: skip
    exact = out["gamma"][2] == int(np.prod(np.arange(1, k + 1)))
    return MatrixTest(
        gamma=out["gamma"][0], p_gamma=out["gamma"][1], correlation=out["corr"][0],
        p_correlation=out["corr"][1], n_targets=k, n_permutations=out["gamma"][2], exact=exact,
    )  # fmt: skip


def label_permutation_p(
    stat: Callable[[np.ndarray], float], k: int, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, int]:
    """(statistic, one-sided p of "greater", permutations drawn) over orderings of k labels.

    `stat(order)` recomputes the statistic with row i relabelled as `order[i]`; exact (all k!
    orderings) when k! <= n_resamples.
    """
    res = stats.permutation_test(
        (np.arange(k),), stat, permutation_type="pairings", alternative="greater",
        n_resamples=n_resamples, vectorized=False, random_state=seed,
    )  # fmt: skip
    return float(res.statistic), float(res.pvalue), len(res.null_distribution)


def shift_matrix(
    student_log_odds: Mapping[str, np.ndarray], base_log_odds: np.ndarray, targets: Sequence[str]
) -> np.ndarray:
    """Rows in `targets` order: each target's student log-odds minus the base's."""
    return np.stack([np.asarray(student_log_odds[t]) - base_log_odds for t in targets])
