"""What every figure of the suite shares (matplotlib, Agg, PNG at 150 dpi): undefined values as
gaps, error bars from an interval, a diverging heatmap, and an atomic write. The report's
figures (`interp.report.figures`) and each analysis's own figure (`interp.analysis.*`) use it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from interp.store.stages import write_atomic  # noqa: E402

DPI = 150


def num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def err(est: dict[str, Any] | None) -> tuple[float, float, float]:
    """(mean, lower error, upper error) for errorbar; NaN / zero error where undefined."""
    if not est or est.get("mean") is None:
        return float("nan"), 0.0, 0.0
    m, lo, hi = num(est["mean"]), num(est.get("lo")), num(est.get("hi"))
    lo_e = m - lo if math.isfinite(lo) else 0.0
    hi_e = hi - m if math.isfinite(hi) else 0.0
    return m, max(lo_e, 0.0), max(hi_e, 0.0)


def heatmap(ax: plt.Axes, data: np.ndarray, xlabels: Sequence[str], ylabels: Sequence[str]) -> Any:
    """A red-blue map centred on 0, its scale the largest finite magnitude; NaN cells blank."""
    finite = data[np.isfinite(data)]
    vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(np.ma.masked_invalid(data), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    step = max(1, len(xlabels) // 16)  # at most ~16 tick labels, or they overlap
    ticks = list(range(0, len(xlabels), step))
    ax.set_xticks(ticks, [xlabels[i] for i in ticks], fontsize=7, rotation=45 if step == 1 else 0)
    return im


def save_figure(fig: plt.Figure, path: Path, **kw: object) -> None:
    """Render to memory, then write atomically: a kill never leaves half a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png", **kw)
    write_atomic(path, buf.getvalue())


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
