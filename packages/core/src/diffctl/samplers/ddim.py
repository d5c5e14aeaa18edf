"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12).

From x_t with estimates (x0, eps), step to the grid's next alpha_bar a':
    x' = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z,
    sigma = eta * sqrt((1 - a') / (1 - a) * (1 - a / a')).
eta = 0 is deterministic; eta = 1 gives the DDPM posterior variance. With all T steps and
eta = 0 this is the "deterministic DDPM" sampler.
"""

from __future__ import annotations

import math

import torch

from diffctl.samplers.base import Callback, DenoiserCall, GridSampler, SamplingGrid, Step
from diffctl.samplers.noise import Generator, randn_like


def ddim_sigma(a: float, a_next: float, eta: float) -> float:
    """Noise scale of one DDIM step (Song et al. 2021, eq. 16)."""
    return eta * math.sqrt(max((1 - a_next) / (1 - a) * (1 - a / a_next), 0.0))


def sample_ddim(model: DenoiserCall, grid: SamplingGrid, x: torch.Tensor, eta: float = 0.0,
                generator: Generator = None, callback: Callback = None) -> torch.Tensor:
    for i, t in enumerate(grid.timesteps.tolist()):
        a, a_next = float(grid.alpha_bars[i]), float(grid.alpha_bars_next[i])
        x0, eps = model(x, t, a)
        sigma = ddim_sigma(a, a_next, eta)
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * randn_like(x, generator)
        if callback is not None:
            callback(Step(i, t, x, x0, len(grid)))
    return x


class DDIMSampler(GridSampler):
    """Registered as ``ddim``; config: ``eta``, ``spacing``, ``final_alpha_one``."""

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.config.eta == 0

    def solve(self, model, scheduler, grid, x, generator, callback):
        return sample_ddim(model, grid, x, self.config.eta, generator, callback)
