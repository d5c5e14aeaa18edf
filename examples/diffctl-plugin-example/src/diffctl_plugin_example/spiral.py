"""A 2-D spiral: subclassing the core's ``Points2D`` gives the train/test split, fresh
reference draws and augmentation that ``diffctl run`` expects; only ``draw`` is new."""

from __future__ import annotations

import math

import numpy as np

from diffctl.datasets.toy2d import Points2D
from diffctl_plugin_example.configs import SpiralConfig


class Spiral(Points2D):
    """Points along ``arms`` Archimedean arms r = radius * u, angle = 2 pi turns u + arm offset,
    with u = sqrt(uniform) so that the density along each arm grows with the radius like its
    length does, plus N(0, noise^2) per coordinate."""

    name = "spiral"
    config: SpiralConfig

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        arm = rng.integers(0, cfg.arms, size=n)
        u = np.sqrt(rng.uniform(size=n))
        angle = 2 * math.pi * (cfg.turns * u + arm / cfg.arms)
        points = cfg.radius * u[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return points + rng.normal(scale=cfg.noise, size=points.shape)

    @property
    def title(self) -> str:
        cfg = self.config
        return f"spiral ({cfg.arms} arms, {cfg.turns:g} turns, noise {cfg.noise:g})"
