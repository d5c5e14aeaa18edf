"""The one look of every diffctl plot: matplotlib settings, colours, axis labels, saving.

Every figure module gets pyplot from :func:`pyplot` (Agg backend, these settings applied once)
and writes with :func:`save`; real data is always drawn in :data:`REAL` and generated samples
in :data:`GENERATED`; axes are labelled from :data:`AXIS_LABELS` (with units) so "epoch" or
"seconds" reads the same in every picture. Imported only by commands that plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DPI = 110
REAL = "#4c72b0"  # real data: blue
GENERATED = "#dd8452"  # generated samples: orange
FLOOR = "#7f7f7f"  # real-vs-real floors: grey, dashed (mean) and dotted (p95)
#: Colours of several series (runs, samplers) in order; real and generated keep their own.
SERIES = ("#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd", "#4c72b0", "#dd8452")
TITLE_SIZE = 10
SMALL = 8

#: Axis labels with their units, by the quantity on the axis.
AXIS_LABELS = {
    "step": "training step",
    "epoch": "epoch",
    "seconds": "wall time (s)",
    "train_seconds": "training time (s)",
    "wall_seconds": "wall time (s)",
    "loss": "training loss (MSE)",
    "sampler_steps": "sampler steps",
}

_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "axes.titlesize": TITLE_SIZE,
    "axes.labelsize": 9,
    "xtick.labelsize": SMALL,
    "ytick.labelsize": SMALL,
    "legend.fontsize": SMALL,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "font.size": 9,
    "figure.constrained_layout.use": True,
}
_applied = False


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend with diffctl's settings."""
    global _applied
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not _applied:
        plt.rcParams.update(_RC)
        _applied = True
    return plt


def axis_label(quantity: str) -> str:
    """The label (with unit) of ``quantity``; the name itself when it has none."""
    return AXIS_LABELS.get(quantity, quantity)


def x_axis(ax: Any, quantity: str = "epoch") -> None:
    """Label the x axis with ``quantity`` and its unit; epochs and steps get whole ticks."""
    ax.set_xlabel(axis_label(quantity))
    if quantity in ("epoch", "step"):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def series_colour(i: int) -> str:
    return SERIES[i % len(SERIES)]


def save(fig: Any, path: Path) -> Path:
    """Lay out, write at :data:`DPI` and close ``fig``; returns ``path``."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def clean(ax: Any) -> None:
    """An axis that shows a picture or a point cloud: no ticks, no grid, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def limits(*arrays: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shared x and y limits of 2-D point sets (0.5-99.5 percentiles, 10% margin)."""
    pts = np.concatenate([np.asarray(a).reshape(-1, 2) for a in arrays])
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    pad = 0.1 * (hi - lo)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def points(ax: Any, generated: np.ndarray | None, real: np.ndarray | None = None,
           lims: tuple | None = None, size: float = 2.0) -> None:
    """Generated points over the real ones (faint), on equal axes."""
    if real is not None:
        ax.scatter(real[:, 0], real[:, 1], s=size, alpha=0.35, color=REAL, linewidths=0,
                   label="real")
    if generated is not None:
        ax.scatter(generated[:, 0], generated[:, 1], s=size, alpha=0.5, color=GENERATED,
                   linewidths=0, label="generated")
    if lims is not None:
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])
    ax.set_aspect("equal")
    ax.grid(False)


def images(ax: Any, batch: np.ndarray, ncol: int) -> None:
    """(N, C, H, W) images in [-1, 1] tiled ``ncol`` per row into ``ax``, pixel-exact."""
    from diffctl_cli.image_plots import tile

    canvas = tile(batch, ncol)
    grey = canvas.shape[2] == 1
    ax.imshow(canvas[..., 0] if grey else canvas, cmap="gray" if grey else None,
              vmin=0, vmax=255, interpolation="nearest")
    clean(ax)


def floor_lines(ax: Any, floor: dict | None, colour: str = FLOOR) -> None:
    """A real-vs-real floor as horizontal lines: mean dashed, p95 dotted."""
    if not floor:
        return
    ax.axhline(floor["mean"], color=colour, ls="--", lw=0.8, label="floor mean")
    ax.axhline(floor["p95"], color=colour, ls=":", lw=0.8, label="floor p95")


def short(value: float | None) -> str:
    """A number in 4 significant digits for titles."""
    return "-" if value is None else f"{value:.4g}"
