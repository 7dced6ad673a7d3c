"""Trait direction: per layer, the cosine between each student's mean activation shift from its
base and the trait direction (prompted minus plain base, last prompt token), with a bootstrap
interval over prompts and the control student's cosine on the same draws. Reads the activations
every recorded analysis shares (`AnalysisRun.recorded`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from interp.analysis.reader import AnalysisRun
from interp.analysis.unit import Analysis, figure_render
from interp.extras import backend_module
from interp.mech.directions import direction_cosine_ci
from interp.plots import num, save


def trait_direction(ctx: AnalysisRun) -> dict[str, Any]:
    acts = ctx.recorded[0]
    out, layers = {}, {}
    for name in ctx.students:
        spec = ctx.spec_of(name)
        trait_a, neutral_a = acts[f"prompted:{spec}"]["eval"], acts[f"base:{spec}"]["eval"]
        control = [
            c
            for c in ctx.students
            if c != name and ctx.spec_of(c) == spec and ctx.students[c]["data"] == "control"
        ]
        res = direction_cosine_ci(
            trait_a, neutral_a, acts[name]["eval"], neutral_a, n_boot=ctx.a.n_boot, seed=ctx.cfg["seed"],
            control_acts=acts[control[0]]["eval"] if control and name not in control else None,
        )  # fmt: skip
        out[name] = {"against": f"base:{spec}", **res}
        layers[spec] = trait_a.shape[1]
    return {"backend": ctx.a.backend, "prompt_set": "eval", "n_layers": layers, "students": out}


def trait_direction_figure(students: dict[str, Any], path: Path) -> Path:
    """Per layer, cos(trait direction, student's activation shift) with its bootstrap band."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (n, d) in enumerate(students.items()):
        cos = np.array([num(c) for c in d.get("cosine") or []])
        layers = d.get("layers") or list(range(cos.size))
        ax.plot(layers, cos, marker="o", ms=3, color=f"C{i}", label=n)
        lo, hi = d.get("lo"), d.get("hi")
        if lo and hi:
            ax.fill_between(layers, [num(v) for v in lo], [num(v) for v in hi],
                            color=f"C{i}", alpha=0.2)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("cos(trait direction, student shift)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def _trait_direction_caption(section: dict[str, Any]) -> str:
    return ("Per layer, cosine between the trait direction (mean activation of the "
     "trait-prompted base minus the plain base, last prompt token, backend "
     f"{section.get('backend', '?')}) and the student's mean activation shift from its base, with a "
     "bootstrap band over prompts. Above 0 = the student moved toward the trait; compare with "
     "the control.")  # fmt: skip


render_trait_direction = figure_render(
    "trait_direction", "Trait direction", "students", lambda s, p: trait_direction_figure(s["students"], p), _trait_direction_caption
)


def backend(ctx: AnalysisRun) -> tuple[str, ...]:
    return tuple(backend_module(ctx.a.backend))


ANALYSIS = Analysis(name="trait_direction", script="analyses/trait_direction.py", render=render_trait_direction, title="Trait direction", compute=trait_direction,
                    needs="activations of each base, prompted base and student", extras=backend)  # fmt: skip
