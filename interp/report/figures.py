"""Report figures (matplotlib, Agg, PNG at 150 dpi), drawn only from run artifacts.

Each function takes the JSON block it plots and a path, writes the PNG and returns the path;
no computation beyond what a plot needs (a Wilson interval for a share, where the artifact
gives only the share and its count). Undefined values (None, NaN) are left as gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from interp.stats import wilson  # noqa: E402

DPI = 150
MLP_STYLE = {  # kind -> (colour, line style)
    "teacher": ("C5", "-"),
    "reference": ("gray", ":"),
    "same-init/aux": ("C0", "-"),
    "cross-init/aux": ("C0", "--"),
    "same-init/all": ("C3", "-"),
    "cross-init/all": ("C3", "--"),
}


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _err(est: dict[str, Any] | None) -> tuple[float, float, float]:
    """(mean, lower error, upper error) for errorbar; NaN / zero error where undefined."""
    if not est or est.get("mean") is None:
        return float("nan"), 0.0, 0.0
    m, lo, hi = _num(est["mean"]), _num(est.get("lo")), _num(est.get("hi"))
    lo_e = m - lo if math.isfinite(lo) else 0.0
    hi_e = hi - m if math.isfinite(hi) else 0.0
    return m, max(lo_e, 0.0), max(hi_e, 0.0)


def save_figure(fig: plt.Figure, path: Path, **kw: object) -> None:
    """Render to memory, then write atomically: a kill never leaves half a PNG."""
    import io

    from interp.store.stages import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png", **kw)
    write_atomic(path, buf.getvalue())


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


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
            m, lo, hi = _err(row[idx])
            ax.errorbar(m, yi, xerr=[[lo], [hi]], fmt="s" if row[3] else "o", capsize=3,
                        color="C3" if row[3] else "C0", ms=5)  # fmt: skip
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        # Scores live in [0, 1]; start just left of 0 so points at exactly 0 stay visible.
        right = max([_num(r[idx].get("hi")) for r in rows if r[idx].get("hi") is not None] + [0.05])
        ax.set_xlim(-0.03 * right * 1.1, right * 1.1)
    if n_candidates:  # labelled in the axis title, not a legend: a legend would hide points
        axes[1].axvline(1 / n_candidates, color="gray", ls=":", lw=1)
        axes[1].set_title(f"dotted: uniform over candidates (1/{n_candidates})", fontsize=7)
    axes[0].set_yticks(y, [r[0] for r in rows], fontsize=8)
    axes[0].set_ylabel("model (label in summary.json)")
    return _save(fig, path)


def _heatmap(ax: plt.Axes, data: np.ndarray, xlabels: Sequence[str], ylabels: Sequence[str]) -> Any:
    finite = data[np.isfinite(data)]
    vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(np.ma.masked_invalid(data), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    step = max(1, len(xlabels) // 16)  # at most ~16 tick labels, or they overlap
    ticks = list(range(0, len(xlabels), step))
    ax.set_xticks(ticks, [xlabels[i] for i in ticks], fontsize=7, rotation=45 if step == 1 else 0)
    return im


def update_alignment(students: dict[str, Any], path: Path) -> Path:
    """cos(student delta, teacher delta): per layer and per module (means over seeds, as
    heatmaps) and overall (mean over seeds with its CI)."""
    names = list(students)
    n_layers = max((len(s.get("per_layer_mean") or []) for s in students.values()), default=0)
    layer_mat = np.full((len(names), n_layers), np.nan)
    for i, n in enumerate(names):
        vals = [_num(v) for v in students[n].get("per_layer_mean") or []]
        layer_mat[i, : len(vals)] = vals
    modules = sorted({m for s in students.values() for m in (s.get("per_module_mean") or {})})
    mod_mat = np.array(
        [[_num((students[n].get("per_module_mean") or {}).get(m)) for m in modules] for n in names]
    ).reshape(len(names), len(modules))
    # Two rows so that at page width the labels stay legible: layers on top (they can be
    # many), modules and the overall cosine with its CI below.
    fig = plt.figure(figsize=(9, 2.6 + 0.7 * len(names)))
    gs = fig.add_gridspec(2, 2, width_ratios=[1.3, 1])
    axes = [fig.add_subplot(gs[0, :]), fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])]
    im = _heatmap(axes[0], layer_mat, [str(i) for i in range(n_layers)], names)
    axes[0].set_xlabel("layer")
    axes[0].set_title("per layer (mean over seeds)", fontsize=9)
    fig.colorbar(im, ax=axes[0], label="cosine", fraction=0.04)
    im = _heatmap(axes[1], mod_mat, modules, names)
    axes[1].set_xlabel("module")
    axes[1].set_title("per module (mean over seeds)", fontsize=9)
    fig.colorbar(im, ax=axes[1], label="cosine", fraction=0.08)
    ax = axes[2]
    y = np.arange(len(names))[::-1]
    for yi, n in zip(y, names):
        m, lo, hi = _err(students[n].get("overall"))
        ax.errorbar(m, yi, xerr=[[lo], [hi]], fmt="o", capsize=3, color="C0")
        seeds = [_num(e.get("overall")) for e in (students[n].get("per_seed") or {}).values()]
        ax.plot(seeds, [yi] * len(seeds), "x", color="gray", ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("cosine (CI over seeds; x = seed)", fontsize=8)
    ax.set_title("all parameters", fontsize=9)
    return _save(fig, path)


def gradient_alignment(datasets: dict[str, Any], path: Path) -> Path:
    """Per-batch cos(-gradient, teacher delta) at each student's init, per dataset: the
    batches as points, their mean with CI as a bar."""
    names = list(datasets)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(names), 3.6))
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for i, n in enumerate(names):
        d = datasets[n]
        cos = np.array([_num(c) for c in d.get("cos") or []])
        ax.scatter(i + rng.uniform(-0.15, 0.15, cos.size), cos, s=12, alpha=0.6, color="C0")
        m, lo, hi = _err(d.get("cos_ci"))
        ax.errorbar(i + 0.3, m, yerr=[[lo], [hi]], fmt="D", color="C3", capsize=4)
        fp = d.get("frac_positive")
        if fp is not None:
            ax.annotate(f"{100 * fp:.0f}% > 0", (i, 1.02), xycoords=("data", "axes fraction"),
                        ha="center", fontsize=7)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)),
                  [f"{n}\n({datasets[n].get('data', '?')} data)" for n in names], fontsize=8)  # fmt: skip
    ax.set_xlim(-0.6, len(names) - 0.3)
    ax.set_ylabel("cos(-gradient, teacher delta) per batch")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def trait_direction(students: dict[str, Any], path: Path) -> Path:
    """Per layer, cos(trait direction, student's activation shift) with its bootstrap band."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (n, d) in enumerate(students.items()):
        cos = np.array([_num(c) for c in d.get("cosine") or []])
        layers = d.get("layers") or list(range(cos.size))
        ax.plot(layers, cos, marker="o", ms=3, color=f"C{i}", label=n)
        lo, hi = d.get("lo"), d.get("hi")
        if lo and hi:
            ax.fill_between(layers, [_num(v) for v in lo], [_num(v) for v in hi],
                            color=f"C{i}", alpha=0.2)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("cos(trait direction, student shift)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def trajectories(students: dict[str, Any], path: Path) -> Path:
    """Over optimiser steps, per student: p(target) with its CI, cos(v_S, v_T), gamma over the
    run's targets with its CI (where every target saved checkpoints) and, where the run has a
    teacher delta, the update cosine (own teacher solid; the other targets' teachers dashed, where
    every target has one) and the imitation-gradient alignment with its CI over batches."""
    has_update = any(r.get("update_cos") is not None for d in students.values() for r in d["steps"])
    has_gamma = any(d.get("gamma_steps") for d in students.values())
    has_grad = any(r.get("gradient_cos") for d in students.values() for r in d["steps"])
    upd, grad = "cos(student update,\nteacher update)", "cos(-grad of imitation loss,\nteacher update)"
    labels = ["p(target)", "cos(v_S, v_T), mean over layers"]
    labels += ["gamma over targets (nats)"] if has_gamma else []
    labels += [upd] if has_update else []
    labels += [grad] if has_grad else []
    ncol = min(3, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.3, 3.2 * nrow), squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    axes = axes[: len(labels)]
    ax_of = dict(zip(labels, axes))
    for i, (n, d) in enumerate(students.items()):
        steps = [r["step"] for r in d["steps"]]
        ts = [r["trait_score"] for r in d["steps"]]
        ax_of["p(target)"].errorbar(steps, [_num(t["mean"]) for t in ts], yerr=np.array([_err(t)[1:] for t in ts]).T,
                                    marker="o", ms=3, capsize=2, color=f"C{i}", label=n)  # fmt: skip
        vc = [(r["step"], _num(r["vector_cos"]["mean"])) for r in d["steps"] if r.get("vector_cos")]
        if vc:
            ax_of[labels[1]].plot(*zip(*vc), marker="o", ms=3, color=f"C{i}", label=n)
        if has_gamma and d.get("gamma_steps"):
            g = d["gamma_steps"]
            lo = [r["gamma"] - r["gamma_ci"]["lo"] if r["gamma_ci"] else 0.0 for r in g]
            hi = [r["gamma_ci"]["hi"] - r["gamma"] if r["gamma_ci"] else 0.0 for r in g]
            ax_of["gamma over targets (nats)"].errorbar([r["step"] for r in g], [r["gamma"] for r in g], yerr=[lo, hi],
                                                        marker="o", ms=3, capsize=2, color=f"C{i}", label=n)  # fmt: skip
        uc = [(r["step"], _num(r["update_cos"])) for r in d["steps"] if r.get("update_cos") is not None]
        if has_update and uc:
            ax_of[upd].plot(*zip(*uc), marker="o", ms=3, color=f"C{i}", label=n)
        if has_update and d.get("update_steps"):
            us = d["update_steps"]
            ax_of[upd].plot([r["step"] for r in us], [r["others"] for r in us], ls="--", marker="x", ms=3,
                            color=f"C{i}", label=f"{n}: other targets' teachers")  # fmt: skip
        gc = [(r["step"], r["gradient_cos"]["cos_ci"]) for r in d["steps"] if r.get("gradient_cos")]
        if has_grad and gc:
            ax_of[grad].errorbar([s for s, _ in gc], [_num(c["mean"]) for _, c in gc],
                                 yerr=np.array([_err(c)[1:] for _, c in gc]).T, marker="o", ms=3, capsize=2,
                                 color=f"C{i}", label=n)  # fmt: skip
    for ax, lab in zip(axes, labels):
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(lab, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.axhline(0, color="black", lw=0.8)
    axes[0].legend(fontsize=7)
    if has_update:  # cosines of ~1e-3: an offset exponent keeps the tick labels short
        ax_of[upd].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
        if any(d.get("update_steps") for d in students.values()):
            ax_of[upd].legend(fontsize=6)
    return _save(fig, path)


def probes(bases: dict[str, Any], students: dict[str, Any], path: Path) -> Path:
    """Held-out probe AUROC per layer (per base model) and, per student, the share of prompts
    the probe calls trait-bearing with a Wilson 95% band."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (spec, b) in enumerate(bases.items()):
        auroc = [_num(a) for a in b.get("auroc") or []]
        axes[0].plot(range(len(auroc)), auroc, marker="o", ms=3, color=f"C{i}", label=spec)
        if b.get("best_layer") is not None and auroc:
            bl = int(b["best_layer"])
            axes[0].plot([bl], [auroc[bl]], "*", ms=12, color=f"C{i}")
    axes[0].axhline(0.5, color="gray", ls=":", label="chance")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("probe AUROC (held out)")
    axes[0].legend(fontsize=7)
    for i, (n, s) in enumerate(students.items()):
        share = [_num(v) for v in s.get("share_trait") or []]
        layers = list(range(len(share)))
        ls = ":" if n.startswith("base:") else "-"
        axes[1].plot(layers, share, marker="o", ms=3, ls=ls, color=f"C{i}", label=n)
        if s.get("n"):
            band = [wilson(v, int(s["n"])) for v in share]
            axes[1].fill_between(layers, [b[0] for b in band], [b[1] for b in band],
                                 color=f"C{i}", alpha=0.15)  # fmt: skip
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("layer")
    axes[1].set_ylabel("share classified trait-bearing")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


# ---------------------------------------------------------------- MLP


def mlp_accuracy(per_m: dict[str, Any], chance: float | None, path: Path) -> Path:
    """Test accuracy (mean, 95% t-interval over seeds) against the number of aux logits."""
    ms = sorted(per_m, key=int)
    kinds = [k for k in MLP_STYLE if any(k in per_m[m] for m in ms)]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for kind in kinds:
        colour, ls = MLP_STYLE[kind]
        xs = [int(m) for m in ms if kind in per_m[m]]
        vals = [_err(per_m[m][kind].get("acc")) for m in ms if kind in per_m[m]]
        ax.errorbar(xs, [v[0] for v in vals], yerr=[[v[1] for v in vals], [v[2] for v in vals]],
                    label=kind, color=colour, ls=ls, marker="o", capsize=3)  # fmt: skip
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xticks([int(m) for m in ms], [str(m) for m in ms])
    ax.set_xlabel("number of auxiliary logits m (log scale)")
    ax.set_ylabel("test accuracy (fraction of held-out digits)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no data hidden
    return _save(fig, path)


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
            vals = [_err(cos.get(layer)) for layer in layers]
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
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room below the panels for one shared legend
    fig.legend(handles, labels, loc="lower center", ncol=len(kinds), fontsize=7, frameon=False)
    save_figure(fig, path)
    plt.close(fig)
    return path
