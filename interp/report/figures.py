"""Report figures (matplotlib, Agg, PNG at 150 dpi), drawn only from run artifacts.

Each function takes the JSON block it plots and a path, writes the PNG and returns the path;
no computation beyond what a plot needs (a Wilson interval for a share, where the artifact
gives only the share and its count). Undefined values (None, NaN) are left as gaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from interp.plots import err, num, save, save_figure  # noqa: E402

MLP_STYLE = {  # kind -> (colour, line style)
    "teacher": ("C5", "-"),
    "reference": ("gray", ":"),
    "same-init/aux": ("C0", "-"),
    "cross-init/aux": ("C0", "--"),
    "same-init/all": ("C3", "-"),
    "cross-init/all": ("C3", "--"),
    # the arms (runs/mlp-arms*.toml): one colour per arm, dashed (pale bars) = cross-init
    "shared-hidden-init/aux": ("C1", "-"),
    "shared-head-init/aux": ("C2", "-"),
    "same-init/aux-proj": ("C4", "-"),
    "cross-init/aux-proj": ("C4", "--"),
    "shared-hidden-init/aux-proj": ("C6", "-"),
    "shared-head-init/aux-proj": ("C8", "-"),
    "cnn-init/aux": ("C9", "-"),  # a fresh CNN student (runs/mlp-cnn.toml), no shared init
}


# ---------------------------------------------------------------- subliminal


def trait_matrix(matrix: dict[str, Any], path: Path) -> Path:
    """One heatmap per student entry: rows = whose data, columns = shift on each target (nats)."""
    targets = matrix["targets"]
    cands = matrix["candidates"]
    cols = [cands.index(t) for t in targets]
    arms = [(n, a) for n, a in matrix["arms"].items() if a.get("shifts")]
    n = max(1, len(arms))
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n + 0.4, 3.0), squeeze=False)
    for ax, (name, arm) in zip(axes[0], arms):
        sub = np.array(arm["shifts"])[:, cols]
        # each panel its own symmetric scale: one arm's drift (a cross-model student moving
        # +-0.3 nats toward some animals whatever its data) must not wash out another's diagonal
        vmax = max(float(np.max(np.abs(sub))), 1e-6)
        im = ax.imshow(sub, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_xticks(range(len(targets)), targets, rotation=90, fontsize=7)
        ax.set_yticks(range(len(targets)), targets, fontsize=7)
        g = arm.get("gamma")
        title = f"{name}\n" + (f"γ={g:+.3f} nats, p={arm['p_gamma']:.3g}" if g is not None else "γ: n/a")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("log-odds shift on target vs base (nats)", fontsize=7)
    axes[0][0].set_ylabel("student trained on data of", fontsize=7)
    save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return path



def trait_scores(
    models: dict[str, Any], students: dict[str, Any], target: str, n_candidates: int, path: Path
) -> Path:
    """Both trait metrics per evaluated model (bootstrap CI over questions) and per student
    kind (t-interval over seeds), as horizontal error bars."""
    rows: list[tuple[str, dict, dict, bool]] = [
        (label, m["trait_rate"], m["logprob"], False) for label, m in models.items()
    ]
    rows += [
        (f"{name} (mean of {s['trait_rate'].get('n', '?')} seeds)", s["trait_rate"], s["logprob"], True)
        for name, s in students.items()
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(9, 1.2 + 0.32 * len(rows)), sharey=True)
    y = np.arange(len(rows))[::-1]
    metrics = (
        (1, f"trait rate: share of sampled answers naming '{target}'"),
        (2, f"log-prob score: p('{target}') among {n_candidates} candidates"),
    )
    for ax, (idx, xlabel) in zip(axes, metrics):
        for yi, row in zip(y, rows):
            m, lo, hi = err(row[idx])
            ax.errorbar(m, yi, xerr=[[lo], [hi]], fmt="s" if row[3] else "o", capsize=3,
                        color="C3" if row[3] else "C0", ms=5)  # fmt: skip
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        # Scores live in [0, 1]; start just left of 0 so points at exactly 0 stay visible.
        right = max([num(r[idx].get("hi")) for r in rows if r[idx].get("hi") is not None] + [0.05])
        ax.set_xlim(-0.03 * right * 1.1, right * 1.1)
    if n_candidates:  # labelled in the axis title, not a legend: a legend would hide points
        axes[1].axvline(1 / n_candidates, color="gray", ls=":", lw=1)
        axes[1].set_title(f"dotted: uniform over candidates (1/{n_candidates})", fontsize=7)
    axes[0].set_yticks(y, [r[0] for r in rows], fontsize=8)
    axes[0].set_ylabel("model (label in summary.json)")
    return save(fig, path)


# ---------------------------------------------------------------- MLP


def mlp_accuracy(per_m: dict[str, Any], chance: float | None, path: Path) -> Path:
    """Test accuracy (mean, 95% t-interval over seeds) against the number of aux logits."""
    ms = sorted(per_m, key=int)
    kinds = [k for k in MLP_STYLE if any(k in per_m[m] for m in ms)]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for kind in kinds:
        colour, ls = MLP_STYLE[kind]
        xs = [int(m) for m in ms if kind in per_m[m]]
        vals = [err(per_m[m][kind].get("acc")) for m in ms if kind in per_m[m]]
        ax.errorbar(xs, [v[0] for v in vals], yerr=[[v[1] for v in vals], [v[2] for v in vals]],
                    label=kind, color=colour, ls=ls, marker="o", capsize=3)  # fmt: skip
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xticks([int(m) for m in ms], [str(m) for m in ms])
    ax.set_xticks([], minor=True)  # no "3x10^1"-style minor labels over the m ticks
    ax.set_xlabel("number of auxiliary logits m (log scale)")
    ax.set_ylabel("test accuracy (fraction of held-out digits)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no data hidden
    return save(fig, path)


def mlp_cosine(per_m: dict[str, Any], path: Path) -> Path:
    """cos(student delta, teacher delta) per layer and overall, one panel per m, with CIs."""
    ms = sorted(per_m, key=int)
    kinds = [k for k in MLP_STYLE if any("cos_dS_dT" in per_m[m].get(k, {}) for m in ms)]
    layers = next((list(per_m[m][k]["cos_dS_dT"]) for m in ms for k in kinds
                   if "cos_dS_dT" in per_m[m].get(k, {})), [])  # fmt: skip
    fig, axes = plt.subplots(
        1, len(ms), figsize=(2.6 * len(ms) + 1, 3.4), sharey=True, squeeze=False
    )
    width = 0.8 / max(len(kinds), 1)
    for ax, m in zip(axes[0], ms):
        for j, kind in enumerate(kinds):
            cos = per_m[m].get(kind, {}).get("cos_dS_dT", {})
            vals = [err(cos.get(layer)) for layer in layers]
            colour, ls = MLP_STYLE[kind]
            ax.bar([i + (j - (len(kinds) - 1) / 2) * width for i in range(len(layers))],
                   [v[0] for v in vals], width, yerr=[[v[1] for v in vals], [v[2] for v in vals]],
                   color=colour, alpha=1.0 if ls == "-" else 0.45, label=kind, capsize=2)  # fmt: skip
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(f"m = {m}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("cos(student delta, teacher delta)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(max(len(kinds), 1), 4)  # the arms runs have 8 kinds: two rows, not one clipped
    rows = -(-len(kinds) // ncol)
    fig.tight_layout(rect=(0, 0.04 + 0.04 * rows, 1, 1))  # room below for one shared legend
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    save_figure(fig, path)
    plt.close(fig)
    return path
