"""The trait matrix in activation space: does each student move toward its *own* teacher?

For a run with one prompted teacher per target (the trait matrix of `interp.subliminal.matrix`),
every model is recorded on the same rows (e.g. held-out number rows, the positions where the
soft-label students were trained), giving `[row, layer, d_model]` activations:

- teacher direction of target j: mean(prompted_j) - mean(base); its *target-specific* part
  u_j = v_j - mean_k v_k (what the prompts do not share: "a system prompt is present" and
  "animals are in the air" cancel).
- student shift of target i: mean(student_i) - mean(base).
- the cosine matrix C[layer, i, j] = cos(shift_i, u_j), and gamma = mean diagonal - mean
  off-diagonal (`interp.subliminal.matrix.diagonal_gamma`): positive = each student moved toward its
  own teacher's target-specific direction more than toward the others'. The permutation test
  relabels which target each student came from (exact for k! <= resamples).
- against a control teacher (a neutral system prompt): the direction prompted_j - control is
  the trait without "a system prompt is present"; cos(shift_i, that) for a trait student vs
  for the control student is the same-init vs control comparison.
- a target probe: a multinomial logistic regression reads which target's prompt produced a
  row's (target-centred) activation difference; trained on the teachers (held-out rows give
  its accuracy), applied to the students' centred shifts. The mean probability it gives a
  student's own target, minus what it gives the others, is the probe's gamma.

Pure functions: tensors in, arrays or JSON-able dicts out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float
from torch import Tensor

from interp.stats import cosine, t_interval
from interp.subliminal import matrix as mx


def _check(x: Tensor, dims: int, label: str) -> None:
    if x.ndim != dims:
        raise ValueError(f"{label} must have {dims} dims, got shape {tuple(x.shape)}")


def directions(
    prompted: Float[Tensor, "target row layer d_model"], base: Float[Tensor, "row layer d_model"]
) -> Float[Tensor, "target layer d_model"]:
    """v_j = mean over rows of prompted_j - base (rows paired, so the mean of differences)."""
    _check(prompted, 4, "prompted")
    _check(base, 3, "base")
    if prompted.shape[1:] != base.shape:
        raise ValueError(f"prompted {tuple(prompted.shape)} and base {tuple(base.shape)} differ in [row, layer, d_model]")
    return (prompted.double() - base.double()).mean(1)


def centred(v: Float[Tensor, "target layer d_model"]) -> Float[Tensor, "target layer d_model"]:
    """The target-specific part: each target's vector minus the mean over targets."""
    _check(v, 3, "directions")
    if v.shape[0] < 2:
        raise ValueError(f"centring needs >= 2 targets, got {v.shape[0]}")
    return v - v.mean(0, keepdim=True)


def cosine_matrix(
    shifts: Float[Tensor, "student layer d_model"], dirs: Float[Tensor, "target layer d_model"]
) -> Float[np.ndarray, "layer student target"]:
    """C[l, i, j] = cos(shifts[i, l], dirs[j, l]); nan where a vector is zero."""
    _check(shifts, 3, "shifts")
    _check(dirs, 3, "dirs")
    if shifts.shape[1:] != dirs.shape[1:]:
        raise ValueError(f"shifts {tuple(shifts.shape)} and dirs {tuple(dirs.shape)} differ in [layer, d_model]")
    return cosine(shifts[:, None], dirs[None, :]).permute(2, 0, 1).numpy()  # [i, j, layer] -> [layer, i, j]


def gamma_test(
    per_seed: Float[np.ndarray, "seed layer k k"], ci: float = 0.95, seed: int = 0, n_resamples: int = 10_000
) -> dict:
    """gamma per layer (mean over seeds) and the layer-mean gamma, with its permutation p and seed CI.

    The pre-declared statistic is the mean over layers of gamma (no layer is picked after the
    fact); the permutation relabels rows (students' targets) of the seed-mean matrix.
    """
    c = np.asarray(per_seed, dtype=float)
    if c.ndim != 4:
        raise ValueError(f"per_seed must be [seed, layer, k, k], got {c.shape}")
    mean = np.nanmean(c, axis=0)  # [layer, k, k]
    stat, p, n = mx.label_permutation_p(lambda order: float(np.nanmean(mx.diagonal_gamma(mean[:, order, :]))),
                                        c.shape[-1], n_resamples=n_resamples, seed=seed)  # fmt: skip
    per_seed_gamma = [float(np.nanmean(mx.diagonal_gamma(x))) for x in c]
    return {
        "gamma_by_layer": mx.diagonal_gamma(mean).round(6).tolist(),
        "gamma": stat, "p": p, "n_permutations": n,
        "gamma_per_seed": per_seed_gamma, "gamma_ci": t_interval(per_seed_gamma, ci).to_dict(),
    }  # fmt: skip


def own_cosine(
    shifts: Float[Tensor, "target layer d_model"], dirs: Float[Tensor, "target layer d_model"]
) -> Float[np.ndarray, " layer"]:
    """Mean over targets of cos(shift_i, dir_i) per layer (each student against its own teacher)."""
    return np.nanmean(np.diagonal(cosine_matrix(shifts, dirs), axis1=1, axis2=2), axis=1)


# ---------------------------------------------------------------- the target probe


def _rows_unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def target_probe(
    teacher_diffs: Float[Tensor, "target row layer d_model"],
    student_diffs: Float[Tensor, "seed target row layer d_model"],
    *,
    test_frac: float = 0.3,
    C: float = 1.0,
    seed: int = 0,
) -> dict:
    """Per layer: can a linear probe tell which target's prompt moved a row, and does it call
    each student's shift its own target's?

    Inputs are paired row differences (prompted_j - base, student - base). Both sides are
    centred over targets per row (the shared part of all prompts, or of all students, says
    nothing about which target) and scaled to unit length per row. The probe (multinomial
    logistic regression without intercept) trains on the teachers' training rows; its
    accuracy on held-out rows shows the target is readable there. On the students (held-out
    rows only) it gives P[seed, layer, i, j] = mean probability that student i's rows came
    from target j; gamma = mean P(own) - mean P(other) (chance: 0).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    t = teacher_diffs.double().numpy()
    s = student_diffs.double().numpy()
    if t.ndim != 4 or s.ndim != 5 or s.shape[1:] != t.shape:
        raise ValueError(f"teacher diffs [target, row, layer, d] {t.shape} and student diffs "
                         f"[seed, target, row, layer, d] {s.shape} do not match")  # fmt: skip
    k, n_rows, n_layers, _ = t.shape
    t = _rows_unit(t - t.mean(0, keepdims=True))
    s = _rows_unit(s - s.mean(1, keepdims=True))
    train, test = train_test_split(np.arange(n_rows), test_size=test_frac, random_state=seed)
    y_train, y_test = np.repeat(np.arange(k), len(train)), np.repeat(np.arange(k), len(test))
    acc, probs = [], np.zeros((s.shape[0], n_layers, k, k))
    for layer in range(n_layers):
        probe = LogisticRegression(C=C, fit_intercept=False, max_iter=2000)
        probe.fit(t[:, train, layer].reshape(-1, t.shape[-1]), y_train)
        acc.append(float((probe.predict(t[:, test, layer].reshape(-1, t.shape[-1])) == y_test).mean()))
        for sd in range(s.shape[0]):
            for i in range(k):
                probs[sd, layer, i] = probe.predict_proba(s[sd, i][test, layer]).mean(0)
    return {"teacher_accuracy": acc, "chance": 1 / k, "n_train_rows": len(train), "n_test_rows": len(test),
            "probs": probs}  # fmt: skip


def summarise_layers(values: Sequence[float] | np.ndarray, digits: int = 5) -> list[float | None]:
    """JSON-able per-layer list (nan -> None)."""
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.asarray(values, dtype=float)]
