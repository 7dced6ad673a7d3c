"""Probes: per-layer logistic probes telling the trait-prompted base from the plain base (held-out
AUROC), applied to each student (and to the base on number prompts): the share of prompts called
trait-bearing, with a Wilson band. Reads `AnalysisRun.recorded`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from interp.analysis.reader import AnalysisRun
from interp.analysis.trait_direction import backend
from interp.analysis.unit import Analysis, figure_render
from interp.mech.probes import apply_probes, train_probes
from interp.plots import num, save
from interp.stats import wilson


def probes(ctx: AnalysisRun) -> dict[str, Any]:
    acts = ctx.recorded[0]
    bases, students = {}, {}
    for spec in sorted({ctx.spec_of(n) for n in ctx.students}):
        res = train_probes(
            acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"], seed=ctx.cfg["seed"]
        )
        bases[spec] = res.to_dict()
        for name in ctx.students:
            if ctx.spec_of(name) == spec:
                students[name] = {
                    "against": f"base:{spec}",
                    **apply_probes(res, acts[name]["eval"]),
                }
        students[f"base:{spec}"] = {
            "against": f"base:{spec}",
            **apply_probes(res, acts[f"base:{spec}"]["numbers"]),
        }
    return {
        "bases": bases,
        "students": students,
        "note": "base:<spec> rows apply the probe to the base on number prompts",
    }


def probes_figure(bases: dict[str, Any], students: dict[str, Any], path: Path) -> Path:
    """Held-out probe AUROC per layer (per base model) and, per student, the share of prompts
    the probe calls trait-bearing with a Wilson 95% band."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (spec, b) in enumerate(bases.items()):
        auroc = [num(a) for a in b.get("auroc") or []]
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
        share = [num(v) for v in s.get("share_trait") or []]
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
    return save(fig, path)


def _probes_caption(section: dict[str, Any]) -> str:
    return ("Left: held-out AUROC per layer of logistic probes separating the trait-prompted "
     "base from the plain base (star = best layer, 0.5 = chance; a single split, no CI). Right: "
     "share of each student's prompts the probe of its base calls trait-bearing, with a "
     "Wilson 95% band (dotted: the base itself on number prompts).")  # fmt: skip


render_probes = figure_render(
    "probes", "Probes", "bases", lambda s, p: probes_figure(s["bases"], s.get("students") or {}, p), _probes_caption
)


ANALYSIS = Analysis(name="probes", render=render_probes, title="Probes", compute=probes,
                    needs="activations of each base, prompted base and student",
                    extras=lambda ctx: (*backend(ctx), "sklearn"))  # fmt: skip
