"""A continuous-noise-level view of a discrete-time denoiser, for the ODE solvers.

The ODE solvers (Euler, Heun, DPM-Solver++) work in the variance-exploding form of Karras et
al. 2022: x = x0 + sigma * eps with sigma = sqrt((1 - alpha_bar) / alpha_bar), so that the
VP state is x_vp = x / sqrt(1 + sigma^2). :class:`SigmaDenoiser` answers D(x, sigma), the
clean-data estimate at any sigma, by calling the discrete model at the training timestep
whose sigma is nearest in log space. On grid points that timestep is exact; the model itself
is never changed.
"""

from __future__ import annotations

import math

import torch

from diffctl.samplers.base import DenoiserCall, SamplingGrid, sampling_alpha_bars


def grid_sigmas(grid: SamplingGrid) -> list[float]:
    """sigma_0 > ... > sigma_{n-1} at the grid's timesteps, then the final sigma (0 by default)."""
    a = torch.cat([grid.alpha_bars, grid.alpha_bars_next[-1:]])
    return [math.sqrt((1 - float(v)) / float(v)) for v in a]


class SigmaDenoiser:
    """D(x, sigma) for a discrete model; ``x`` is in the VE scale."""

    def __init__(self, model: DenoiserCall, alphas_cumprod: torch.Tensor):
        table = sampling_alpha_bars(alphas_cumprod)
        self.model = model
        self.log_sigmas = 0.5 * torch.log((1 - table) / table)

    def timestep(self, sigma: float) -> int:
        """The training timestep whose sigma is nearest to ``sigma`` in log space."""
        return int(torch.argmin((self.log_sigmas - math.log(sigma)).abs()))

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        alpha_bar = 1.0 / (1.0 + sigma * sigma)
        x0, _ = self.model(x * math.sqrt(alpha_bar), self.timestep(sigma), alpha_bar)
        return x0


def to_ve(x_vp: torch.Tensor, sigma: float) -> torch.Tensor:
    """VP state at noise level sigma -> VE state."""
    return x_vp * math.sqrt(1.0 + sigma * sigma)


def to_vp(x_ve: torch.Tensor, sigma: float) -> torch.Tensor:
    """VE state at noise level sigma -> VP state."""
    return x_ve / math.sqrt(1.0 + sigma * sigma)
