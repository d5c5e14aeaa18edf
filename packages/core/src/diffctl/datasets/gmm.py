"""A ring of isotropic Gaussians: the standard mode-coverage benchmark for 2-D generators."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffctl.datasets.configs import GMMRingConfig
from diffctl.datasets.toy2d import Points2D


def ring_modes(num_components: int, radius: float) -> np.ndarray:
    """Mode centres ``radius (cos 2 pi k / K, sin 2 pi k / K)``, k = 0..K-1, float64 (K, 2)."""
    angles = 2 * math.pi * np.arange(num_components) / num_components
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


class GMMRing(Points2D):
    """Equal-weight mixture of ``num_components`` Gaussians N(mu_k, std^2 I) on a circle.

    ``modes`` (K, 2) float32 and ``std`` are exposed for mode-coverage metrics. Each point
    picks its component uniformly at random, so counts per mode are multinomial.
    """

    name = "gmm-ring"
    config: GMMRingConfig

    def __init__(self, config: GMMRingConfig):
        self._modes64 = ring_modes(config.num_components, config.radius)
        self.modes: torch.Tensor = torch.from_numpy(self._modes64).float()
        self.std: float = config.std
        super().__init__(config)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(len(self._modes64), size=n)
        return self._modes64[k] + self.std * rng.standard_normal((n, 2))

    @property
    def title(self) -> str:
        c = self.config
        return f"gmm-ring ({c.num_components} modes, radius {c.radius:g}, std {c.std:g})"
