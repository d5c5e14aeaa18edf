"""Wasserstein distances between sample sets, through POT (Flamary et al. 2021).

``wasserstein`` solves the exact optimal-transport problem between two equal-size empirical
measures with uniform weights (``ot.emd2``, network simplex): W_p = (min_P <P, |x - y|^p>)^(1/p).
Its cost grows about as n^2.3 in time (measured: 0.25 s at 1000 points, 1.3 s at 2000, 5.5 s
at 5000 on a 2-core CPU) and n² in memory, hence the default subsample of 2000 points.

``sliced-wasserstein`` averages 1-D W_p over random directions (Rabin et al. 2011; Bonneel et
al. 2015): SW_p^p = E_theta W_p^p(theta·X, theta·Y). It costs O(n log n) per direction but is
on a different scale: for a pure translation by d in 2-D, W1 = |d| while SW1 = (2/pi)|d| and
SW2 = |d|/sqrt(2). Compare it with its own floor, never with ``wasserstein``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffctl_metrics._common import as_numpy, subsample_indices
from diffctl_metrics.configs import SlicedWassersteinConfig, WassersteinConfig

_MAX_ITER = 1_000_000_000


def exact_wasserstein(x: np.ndarray, y: np.ndarray, p: int = 1) -> float:
    """Exact W_p between the uniform empirical measures of ``x`` (n, D) and ``y`` (m, D)."""
    import ot

    cost = ot.dist(x, y, metric="euclidean" if p == 1 else "sqeuclidean")
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    # POT's default numItermax (1e5) can stop the simplex early from a few thousand points on
    value, log = ot.emd2(a, b, cost, numItermax=_MAX_ITER, log=True)
    if log.get("warning"):
        raise RuntimeError(f"ot.emd2 did not converge: {log['warning']}")
    return float(value) ** (1.0 / p)


class Wasserstein:
    """``wasserstein``: exact W_p on equal-size seeded subsamples; ``{"wasserstein": value,
    "wasserstein_points": n}`` with n the number of points per sample actually used."""

    higher_is_better = False

    def __init__(self, config: WassersteinConfig | None = None):
        self.config = config or WassersteinConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        cfg = self.config
        x, y = as_numpy(generated), as_numpy(real)
        n = min(cfg.max_points, len(x), len(y))
        x = x[subsample_indices(len(x), n, cfg.seed)]
        y = y[subsample_indices(len(y), n, cfg.seed + 1)]
        return {"wasserstein": exact_wasserstein(x, y, cfg.p), "wasserstein_points": float(n)}


class SlicedWasserstein:
    """``sliced-wasserstein``: Monte-Carlo sliced W_p with seeded directions;
    ``{"sliced-wasserstein": value}``."""

    higher_is_better = False

    def __init__(self, config: SlicedWassersteinConfig | None = None):
        self.config = config or SlicedWassersteinConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        import ot

        cfg = self.config
        x, y = as_numpy(generated), as_numpy(real)
        if cfg.max_points is not None:
            x = x[subsample_indices(len(x), cfg.max_points, cfg.seed)]
            y = y[subsample_indices(len(y), cfg.max_points, cfg.seed + 1)]
        value = ot.sliced_wasserstein_distance(x, y, n_projections=cfg.num_projections,
                                               p=cfg.p, seed=cfg.seed)
        return {"sliced-wasserstein": float(value)}
