"""Figures of image runs: sample grids, class grids, the 10x10 progression, real vs generated.

Grids are written pixel-exact with PIL (no resampling, 2 px gutters); the side-by-side
figure uses matplotlib. Inputs are float arrays in [-1, 1] shaped (N, C, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GUTTER = 2


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    arr = np.clip((np.asarray(images, dtype=np.float32) + 1) * 127.5 + 0.5, 0, 255)
    return arr.astype(np.uint8).transpose(0, 2, 3, 1)


def tile(images: np.ndarray, ncol: int) -> np.ndarray:
    """Tile (N, C, H, W) images into rows of ``ncol``; returns (H', W', C) uint8."""
    pics = to_uint8(images)
    n, h, w, c = pics.shape
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + GUTTER) + GUTTER, ncol * (w + GUTTER) + GUTTER, c), 255,
                     dtype=np.uint8)
    for i, pic in enumerate(pics):
        r, q = divmod(i, ncol)
        y, x = GUTTER + r * (h + GUTTER), GUTTER + q * (w + GUTTER)
        canvas[y:y + h, x:x + w] = pic
    return canvas


def save_png(canvas: np.ndarray, path: Path, scale: int = 2) -> Path:
    """Write a uint8 canvas, upscaled ``scale`` times by pixel repetition (crisp digits)."""
    from PIL import Image

    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    img = Image.fromarray(canvas[..., 0] if canvas.shape[2] == 1 else canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def sample_grid(samples: np.ndarray, path: Path, ncol: int = 10, limit: int = 100) -> Path:
    """The first ``limit`` samples, ``ncol`` per row."""
    return save_png(tile(samples[:limit], ncol), path)


def class_grid(samples: np.ndarray, labels: np.ndarray, num_classes: int, path: Path,
               per_class: int = 10) -> Path:
    """One row per class: the first ``per_class`` samples of each label (blank if fewer)."""
    _, c, h, w = samples.shape
    rows = np.full((num_classes * per_class, c, h, w), 1.0, dtype=np.float32)
    for k in range(num_classes):
        picked = samples[labels == k][:per_class]
        rows[k * per_class:k * per_class + len(picked)] = picked
    return save_png(tile(rows, per_class), path)


def progression_grid(xs: np.ndarray, path: Path) -> Path:
    """Denoising progression: one row per sample, one column per kept state (x_T on the
    left, x_0 on the right).

    ``xs`` is (states, samples, C, H, W) as stored in ``trajectory.npz``; states are clipped
    to [-1, 1] for display (early states are mostly noise of unit variance).
    """
    steps, k = xs.shape[:2]
    order = np.asarray(xs).transpose(1, 0, 2, 3, 4).reshape(steps * k, *xs.shape[2:])
    return save_png(tile(order, steps), path)


def real_vs_generated(samples: np.ndarray, real: np.ndarray, path: Path, n: int = 64,
                      title: str = "") -> Path:
    """Two grids side by side: real images (left) and generated ones (right)."""
    from diffctl_cli import plot_style as style

    plt = style.pyplot()
    ncol = int(np.ceil(np.sqrt(min(n, len(samples), len(real)))))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, images, name, colour in ((axes[0], real, "real", style.REAL),
                                     (axes[1], samples, "generated", style.GENERATED)):
        style.images(ax, images[:ncol * ncol], ncol)
        ax.set_title(f"{name} (first {min(ncol * ncol, len(images))} of {len(images)})",
                     color=colour)
    if title:
        fig.suptitle(title, fontsize=style.TITLE_SIZE)
    return style.save(fig, path)
