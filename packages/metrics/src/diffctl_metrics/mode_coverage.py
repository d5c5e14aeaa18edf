"""Mode coverage of a Gaussian mixture with known, isotropic modes.

The protocol of the mixture-of-Gaussians GAN benchmarks (Metz et al. 2017; Srivastava et al.
2017, VEEGAN): a generated sample belongs to its nearest mode when it lies within 3 std of it,
and a mode is hit when enough samples belong to it.

In 2-D, "within 3 std" is the Euclidean disc of radius 3 std, which holds
1 - exp(-9/2) = 98.89% of an isotropic Gaussian's mass (a chi distribution with 2 degrees of
freedom), not the 99.73% of the one-dimensional three-sigma rule: perfect samples score
``within_3std`` of about 0.989.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffctl_metrics._common import as_numpy
from diffctl_metrics.configs import ModeCoverageConfig


def ring_modes(num_modes: int, radius: float) -> np.ndarray:
    """(K, 2) means equally spaced on a circle from angle 0: r (cos 2 pi k/K, sin 2 pi k/K)."""
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


class ModeCoverage:
    """``mode-coverage``: ``{"mode-coverage": modes_hit / K, "modes_hit": ..., "within_3std":
    ...}``. Mode k is hit when at least ``max(1, min_fraction * N / K)`` of the N generated
    samples have k as nearest mode and lie within 3 std of it; ``within_3std`` is the fraction
    of generated samples within 3 std of their nearest mode. ``real`` is not used: the
    reference is the known mixture."""

    higher_is_better = True

    def __init__(self, config: ModeCoverageConfig | None = None):
        self.config = config or ModeCoverageConfig()
        cfg = self.config
        self.modes = (np.asarray(cfg.modes, dtype=np.float64) if cfg.modes is not None
                      else ring_modes(cfg.num_modes, cfg.radius))

    def __call__(self, generated: Any, real: Any = None) -> dict[str, float]:
        x = as_numpy(generated, dim=self.modes.shape[1])
        k = len(self.modes)
        d = np.linalg.norm(x[:, None, :] - self.modes[None, :, :], axis=-1)  # (N, K)
        nearest = d.argmin(axis=1)
        within = d[np.arange(len(x)), nearest] <= 3.0 * self.config.std
        counts = np.bincount(nearest[within], minlength=k)
        threshold = max(1.0, self.config.min_fraction * len(x) / k)
        hit = int((counts >= threshold).sum())
        return {"mode-coverage": hit / k, "modes_hit": float(hit),
                "within_3std": float(within.mean())}
