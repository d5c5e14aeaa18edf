"""The two-moons metrics published with the 2-D workflow (lower is better, all in [0, 1]).

- ``moons-distance``: 1 - the fraction of generated points whose nearest real point lies
  within ``radius`` (0.02).
- ``moons-hist-mse``: mean squared difference of the 64 x 64 histograms of generated and real
  points over their joint range (min and max of both samples together) padded by 0.5 on each
  side, each histogram divided by its own maximum.
- ``moons-shape``: (1 - silhouette) / 2 for k-means with k = 2 on the generated points
  (``KMeans(n_clusters=2, n_init=10, random_state=seed)`` on all points; the silhouette on a
  seeded subsample of at most 5000 points, as it costs O(n²)); 1.0 when k-means finds fewer
  than 2 distinct clusters (fewer than 2 distinct points). It ignores the real sample: two
  well-separated moons score about 0.26, not 0.
- ``moons-overall``: the mean of the three.

Even perfect samples do not score 0: compare with the real-vs-real floor. It is about 0.13 at
5000 samples and about 0.28 at 1000, where the metrics cannot separate good from perfect.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from diffctl_metrics._common import as_numpy, subsample_indices
from diffctl_metrics.configs import (
    MoonsDistanceConfig,
    MoonsHistConfig,
    MoonsOverallConfig,
    MoonsShapeConfig,
)


def moons_distance(gen: np.ndarray, real: np.ndarray, radius: float = 0.02) -> float:
    """1 - fraction of ``gen`` points with a ``real`` point within ``radius`` (inclusive)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(real).query(gen, k=1)
    return float(1.0 - np.mean(dist <= radius))


def moons_hist_mse(gen: np.ndarray, real: np.ndarray, bins: int = 64,
                   padding: float = 0.5) -> float:
    """MSE between max-normalised ``bins`` x ``bins`` histograms over the padded joint range."""
    both = np.concatenate([gen, real])
    lo, hi = both.min(axis=0) - padding, both.max(axis=0) + padding
    hi = np.where(hi > lo, hi, lo + 1.0)  # degenerate range (identical points, no padding)
    rng = [[lo[0], hi[0]], [lo[1], hi[1]]]
    h_gen = np.histogram2d(gen[:, 0], gen[:, 1], bins=bins, range=rng)[0]
    h_real = np.histogram2d(real[:, 0], real[:, 1], bins=bins, range=rng)[0]
    h_gen /= max(h_gen.max(), 1.0)
    h_real /= max(h_real.max(), 1.0)
    return float(np.mean((h_gen - h_real) ** 2))


def moons_shape(gen: np.ndarray, silhouette_points: int = 5000, seed: int = 0) -> float:
    """(1 - silhouette of 2-means on ``gen``) / 2, or 1.0 without 2 distinct clusters."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    if len(gen) < 3:
        return 1.0
    # One OpenMP thread: on a busy 2-core machine sklearn's OpenMP k-means spends ~1 s in
    # thread barriers for 1000 points, against ~20 ms single-threaded (same result).
    with warnings.catch_warnings(), threadpool_limits(1, user_api="openmp"):
        warnings.simplefilter("ignore")  # fewer distinct points than clusters warns
        labels = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(gen)
    idx = subsample_indices(len(gen), silhouette_points, seed)
    if len(np.unique(labels[idx])) < 2:
        return 1.0
    return float((1.0 - silhouette_score(gen[idx], labels[idx])) / 2.0)


class _MoonsMetric:
    higher_is_better = False

    def _points(self, generated: Any, real: Any) -> tuple[np.ndarray, np.ndarray]:
        return as_numpy(generated, dim=2), as_numpy(real, dim=2)


class MoonsDistance(_MoonsMetric):
    """``moons-distance``: ``{"moons-distance": value}``."""

    def __init__(self, config: MoonsDistanceConfig | None = None):
        self.config = config or MoonsDistanceConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        return {"moons-distance": moons_distance(*self._points(generated, real),
                                                 radius=self.config.radius)}


class MoonsHistMSE(_MoonsMetric):
    """``moons-hist-mse``: ``{"moons-hist-mse": value}``."""

    def __init__(self, config: MoonsHistConfig | None = None):
        self.config = config or MoonsHistConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        return {"moons-hist-mse": moons_hist_mse(*self._points(generated, real),
                                                 bins=self.config.bins,
                                                 padding=self.config.padding)}


class MoonsShape(_MoonsMetric):
    """``moons-shape``: ``{"moons-shape": value}`` (depends on the generated points only)."""

    def __init__(self, config: MoonsShapeConfig | None = None):
        self.config = config or MoonsShapeConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        gen, _ = self._points(generated, real)
        return {"moons-shape": moons_shape(gen, self.config.silhouette_points,
                                           self.config.seed)}


class MoonsOverall(_MoonsMetric):
    """``moons-overall``: the mean of the three, with each of them under its own key."""

    def __init__(self, config: MoonsOverallConfig | None = None):
        self.config = config or MoonsOverallConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        cfg = self.config
        gen, ref = self._points(generated, real)
        parts = {
            "moons-distance": moons_distance(gen, ref, cfg.radius),
            "moons-hist-mse": moons_hist_mse(gen, ref, cfg.bins, cfg.padding),
            "moons-shape": moons_shape(gen, cfg.silhouette_points, cfg.seed),
        }
        return {"moons-overall": float(np.mean(list(parts.values()))), **parts}
