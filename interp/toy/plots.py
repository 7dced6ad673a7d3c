"""Figures for the MLP experiment, drawn from the summary's `per_m` block (no computation here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {  # kind -> (colour, line style)
    "teacher": ("C5", "-"),
    "reference": ("gray", ":"),
    "same-init/aux": ("C0", "-"),
    "cross-init/aux": ("C0", "--"),
    "same-init/all": ("C3", "-"),
    "cross-init/all": ("C3", "--"),
}


def _err(ci: dict[str, Any]) -> tuple[float, float, float]:
    """(mean, lower error, upper error) for errorbar; NaN where undefined."""
    if ci.get("mean") is None:
        return float("nan"), 0.0, 0.0
    return ci["mean"], ci["mean"] - ci["lo"], ci["hi"] - ci["mean"]


def plot_accuracy_vs_m(per_m: dict[str, dict[str, Any]], chance: float, path: Path) -> Path:
    """Test accuracy (mean, 95% CI over seeds) against the number of auxiliary logits."""
    ms = sorted(per_m, key=int)
    kinds = [k for k in STYLE if k in per_m[ms[0]]]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for kind in kinds:
        colour, ls = STYLE[kind]
        vals = [_err(per_m[m][kind]["acc"]) for m in ms]
        ax.errorbar(
            [int(m) for m in ms], [v[0] for v in vals], yerr=[[v[1] for v in vals], [v[2] for v in vals]],
            label=kind, color=colour, ls=ls, marker="o", capsize=3,
        )  # fmt: skip
    ax.axhline(chance, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xticks([int(m) for m in ms], [str(m) for m in ms])
    ax.set_xlabel("auxiliary logits m")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no overlap
    ax.set_title("Students never see a digit or a class logit")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cosines_per_layer(per_m: dict[str, dict[str, Any]], path: Path) -> Path:
    """cos(dS, dT) per layer and overall, one panel per m, one bar group per student kind."""
    ms = sorted(per_m, key=int)
    students = [k for k in STYLE if k in per_m[ms[0]] and "cos_dS_dT" in per_m[ms[0]][k]]
    layers = list(per_m[ms[0]][students[0]]["cos_dS_dT"]) if students else []
    fig, axes = plt.subplots(
        1, len(ms), figsize=(3.2 * len(ms) + 1.6, 3.4), sharey=True, squeeze=False
    )
    width = 0.8 / max(len(students), 1)
    for ax, m in zip(axes[0], ms):
        for j, kind in enumerate(students):
            colour, ls = STYLE[kind]
            vals = [_err(per_m[m][kind]["cos_dS_dT"][layer]) for layer in layers]
            ax.bar(
                [i + (j - (len(students) - 1) / 2) * width for i in range(len(layers))], [v[0] for v in vals],
                width, yerr=[[v[1] for v in vals], [v[2] for v in vals]], color=colour,
                alpha=1.0 if ls == "-" else 0.45, label=kind, capsize=2,
            )  # fmt: skip
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=8)
        ax.set_title(f"m = {m}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("cos(student delta, teacher delta)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
