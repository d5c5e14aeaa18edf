"""Energy distance (Szekely & Rizzo 2013, "Energy statistics", eq. 2.2), V-statistic form:

    E(X, Y) = 2 mean |x_i - y_j|^a - mean |x_i - x_j|^a - mean |y_i - y_j|^a

It is zero for identical samples, symmetric, and for 0 < a < 2 zero in the population only
when the distributions are equal. Pairwise distances are summed in float64 row blocks.
"""

from __future__ import annotations

from typing import Any

import torch

from diffctl_plugin_example.configs import EnergyDistanceConfig


def mean_distance(a: torch.Tensor, b: torch.Tensor, exponent: float, block: int) -> float:
    """Mean of |a_i - b_j|^exponent over all pairs (i, j)."""
    total = 0.0
    for i in range(0, len(a), block):
        d = torch.cdist(a[i:i + block], b, compute_mode="donot_use_mm_for_euclid_dist")
        total += float(d.pow(exponent).sum())
    return total / (len(a) * len(b))


class EnergyDistance:
    """``energy-distance``: ``{"energy-distance": E}`` for samples shaped (N, ...)."""

    higher_is_better = False

    def __init__(self, config: EnergyDistanceConfig | None = None):
        self.config = config or EnergyDistanceConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        x = torch.as_tensor(generated).double().flatten(1)
        y = torch.as_tensor(real).double().flatten(1).to(x.device)
        p, block = self.config.exponent, self.config.block_size
        xy, xx, yy = (mean_distance(x, y, p, block), mean_distance(x, x, p, block),
                      mean_distance(y, y, p, block))
        return {"energy-distance": 2 * xy - xx - yy}
