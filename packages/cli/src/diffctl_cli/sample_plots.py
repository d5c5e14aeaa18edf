"""Pictures of samples: one row per sampler, one checkpoint's samples, a strip across epochs.

Points (N, 2) are drawn as generated over real scatter panels, images (N, C, H, W) in [-1, 1]
as pixel-exact tiles; the look comes from :mod:`diffctl_cli.plot_style`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffctl_cli import plot_style as style

#: The most checkpoints a strip shows (evenly spaced, first and last always among them).
STRIP_MAX = 12


def _is_images(array: np.ndarray) -> bool:
    return array.ndim == 4


def _grid_columns(k: int) -> int:
    return max(1, int(np.ceil(np.sqrt(k))))


def samples_panel(ax: Any, samples: np.ndarray, real: np.ndarray | None = None,
                  lims: tuple | None = None, limit: int = 36) -> None:
    """One panel: 2-D points over the real ones, or the first ``limit`` images tiled."""
    if _is_images(samples):
        shown = samples[:limit]
        style.images(ax, shown, _grid_columns(len(shown)))
        return
    style.points(ax, samples, real, lims or style.limits(samples, *(
        [real] if real is not None else [])))
    style.clean(ax)


def run_samples_panel(ax: Any, samples_file: str | None, real_file: str | None) -> None:
    """A compared run's final samples (samples.npy over real.npy), or a note when absent."""
    if not samples_file:
        ax.text(0.5, 0.5, "no samples.npy\n(run not finalized)", ha="center", va="center",
                transform=ax.transAxes, fontsize=style.SMALL)
        style.clean(ax)
        return
    samples = np.load(samples_file)
    real = np.load(real_file) if real_file else None
    samples_panel(ax, samples, real)
    shown = min(len(samples), 36) if _is_images(samples) else len(samples)
    ax.set_xlabel(f"{shown} of {len(samples)} samples" if _is_images(samples)
                  else f"{len(samples)} generated (orange) over real (blue)",
                  fontsize=style.SMALL)


def row_title(label: str, steps: int, seconds: float, metric: str | None,
              value: float | None) -> str:
    """``ddim (eta=0), 50 steps, 1.2 s, mmd-rbf 0.0031``."""
    text = f"{label}, {steps} steps, {seconds:.2f} s"
    return text + (f", {metric} {style.short(value)}" if metric else "")


def plot_sampler_comparison(comparison: Any, path: Path) -> Path:
    """One row of images (or one scatter panel of points) per sampler, all from the same x_T,
    each titled with its sampler, steps, wall time and headline metric. ``comparison`` is a
    :class:`diffctl.runs.sampler_comparison.SamplerComparison`."""
    plt = style.pyplot()
    rows = comparison.rows
    first = rows[0].samples.numpy()
    floor = comparison.floor
    note = f"{comparison.metric} on {comparison.num_samples} samples per sampler" \
        if comparison.metric else "no headline metric"
    if floor:
        reference = floor["p95"] if floor.get("zero_centred") else floor["mean"]
        note += f" (real-vs-real floor {style.short(reference)})"
    header = (f"{comparison.checkpoint}: every sampler from the same x_T "
              f"(seed {comparison.seed}); {note}")
    if _is_images(first):
        show = comparison.show
        fig, axes = plt.subplots(len(rows), 1, figsize=(max(6.0, 0.75 * show + 1),
                                                        1.15 * len(rows) + 0.9),
                                 squeeze=False)
        for ax, row in zip(axes[:, 0], rows, strict=True):
            style.images(ax, row.samples[:show].numpy(), show)
            ax.set_title(row_title(row.spec.label, row.steps, row.seconds, comparison.metric,
                                   row.value), fontsize=style.SMALL + 1, loc="left")
        header += f"; the first {show} shown"
    else:
        real = comparison.real.numpy() if comparison.real is not None else None
        lims = style.limits(*(r.samples.numpy() for r in rows),
                            *([real] if real is not None else []))
        cols = min(len(rows), 4)
        nrows = -(-len(rows) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.5 * nrows + 0.6),
                                 squeeze=False)
        for ax in axes.flat[len(rows):]:
            ax.set_visible(False)
        for ax, row in zip(axes.flat, rows, strict=False):
            style.points(ax, row.samples.numpy(), real, lims)
            style.clean(ax)
            ax.set_title(row_title(row.spec.label, row.steps, row.seconds, comparison.metric,
                                   row.value).replace(", ", "\n", 1), fontsize=style.SMALL + 1)
        header += "; generated (orange) over real (blue)"
    fig.suptitle(header, fontsize=style.TITLE_SIZE)
    return style.save(fig, path)


def plot_checkpoint_samples(samples: np.ndarray, real: np.ndarray | None, path: Path,
                            title: str) -> Path:
    """One checkpoint's kept samples: a scatter over the real points, or an image grid."""
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.4))
    samples_panel(ax, samples, real, limit=len(samples))
    ax.set_title(title)
    if not _is_images(samples):
        ax.set_xlabel(f"{len(samples)} generated (orange) over real (blue)",
                      fontsize=style.SMALL)
    return style.save(fig, path)


def strip_selection(names: list[str], limit: int = STRIP_MAX) -> list[int]:
    """Indices of at most ``limit`` evenly spaced items, the first and the last included."""
    if len(names) <= limit:
        return list(range(len(names)))
    return sorted({int(i) for i in np.rint(np.linspace(0, len(names) - 1, limit))})


def plot_sample_strip(items: list[tuple[str, np.ndarray]], real: np.ndarray | None,
                      path: Path, title: str) -> Path:
    """The kept samples of several checkpoints in one row, in training order: ``items`` are
    (label, samples). Image panels tile the same sample indices, so a sample can be followed
    from epoch to epoch; point panels share their axes."""
    plt = style.pyplot()
    picked = [items[i] for i in strip_selection([label for label, _ in items])]
    k = len(picked)
    fig, axes = plt.subplots(1, k, figsize=(2.3 * k + 0.4, 2.9), squeeze=False)
    arrays = [a for _, a in picked]
    lims = None if _is_images(arrays[0]) else style.limits(
        *arrays, *([real] if real is not None else []))
    for ax, (label, samples) in zip(axes[0], picked, strict=True):
        samples_panel(ax, samples, real, lims, limit=len(samples))
        ax.set_title(label, fontsize=style.SMALL + 1)
    shown = "" if k == len(items) else f" ({k} of {len(items)} checkpoints)"
    fig.suptitle(title + shown, fontsize=style.TITLE_SIZE)
    return style.save(fig, path)
