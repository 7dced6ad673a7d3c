"""Per-layer logistic probes for the trait: is it linearly readable from the residual stream?

A probe per layer is trained to tell trait-bearing activations (label 1, e.g. the teacher with
its trait) from neutral ones (label 0) on standardised features, and scored by held-out AUROC:
1.0 = perfectly separable at that layer, 0.5 = chance. Applied to a student's activations,
the share of rows classified trait-bearing (probability > 0.5) says how trait-like the
student looks to a reader trained on the teacher; compare with a control student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor


@dataclass
class ProbeResult:
    """Held-out AUROC per layer; the fitted per-layer models are kept but never serialised."""

    auroc: list[float]
    n_train: int
    n_test: int
    n_trait: int
    n_neutral: int
    seed: int
    C: float
    test_frac: float
    models: list[Any] = field(default_factory=list, repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.auroc)

    @property
    def best_layer(self) -> int:
        return int(np.nanargmax(self.auroc))

    def to_dict(self) -> dict:
        return {
            "auroc": [float(a) for a in self.auroc],
            "best_layer": self.best_layer,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_trait": self.n_trait,
            "n_neutral": self.n_neutral,
            "seed": self.seed,
            "C": self.C,
            "test_frac": self.test_frac,
        }


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def train_probes(
    trait_acts: Float[Tensor, "n layer d_model"],
    neutral_acts: Float[Tensor, "m layer d_model"],
    test_frac: float = 0.3,
    seed: int = 0,
    C: float = 1.0,
) -> ProbeResult:
    """One StandardScaler + LogisticRegression per layer; AUROC on a stratified held-out split.

    The split (fixed by `seed`) is the same rows at every layer, so layers are comparable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt, xn = _as_numpy(trait_acts), _as_numpy(neutral_acts)
    if xt.ndim != 3 or xn.ndim != 3 or xt.shape[1:] != xn.shape[1:]:
        raise ValueError(
            f"trait and neutral acts must be [n, layer, d_model] with equal [layer, d_model], "
            f"got {xt.shape} and {xn.shape}"
        )
    if min(len(xt), len(xn)) < 2:
        raise ValueError(f"need >= 2 rows per class, got {len(xt)} trait and {len(xn)} neutral")
    x = np.concatenate([xt, xn])
    y = np.concatenate([np.ones(len(xt), dtype=int), np.zeros(len(xn), dtype=int)])
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_frac, random_state=seed, stratify=y
    )
    aurocs, models = [], []
    for layer in range(x.shape[1]):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(x[idx_train, layer], y[idx_train])
        scores = model.decision_function(x[idx_test, layer])
        aurocs.append(float(roc_auc_score(y[idx_test], scores)))
        models.append(model)
    return ProbeResult(
        auroc=aurocs, n_train=len(idx_train), n_test=len(idx_test), n_trait=len(xt),
        n_neutral=len(xn), seed=seed, C=C, test_frac=test_frac, models=models,
    )  # fmt: skip


def apply_probes(result: ProbeResult, acts: Float[Tensor, "k layer d_model"]) -> dict:
    """Per layer, the share of rows the probe calls trait-bearing (p > 0.5) and the mean p.

    Returns a JSON-able dict: share_trait [layer], mean_prob [layer], n.
    """
    x = _as_numpy(acts)
    if x.ndim != 3 or x.shape[1] != result.n_layers:
        raise ValueError(f"acts must be [k, {result.n_layers}, d_model], got {x.shape}")
    share, mean = [], []
    for layer, model in enumerate(result.models):
        p = model.predict_proba(x[:, layer])[:, 1]  # classes_ are [0, 1]: column 1 = trait
        share.append(float((p > 0.5).mean()))
        mean.append(float(p.mean()))
    return {"share_trait": share, "mean_prob": mean, "n": int(x.shape[0])}
