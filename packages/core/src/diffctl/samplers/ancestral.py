"""Ancestral (DDPM) sampling: draw x_s ~ q(x_s | x_t, x0_hat) along the grid.

Ho et al. 2020, Algorithm 2, generalised to strided grids: between grid points t > s the
posterior has mean sqrt(a_s) b / (1 - a_t) x0 + sqrt(a_t / a_s) (1 - a_s) / (1 - a_t) x_t and
variance (1 - a_s) / (1 - a_t) b with b = 1 - a_t / a_s (eqs. 6-7). ``variance="beta"`` uses
b itself (the paper's sigma^2 = beta alternative). The last step adds no noise. At
alpha_bar_t = 0 (zero terminal SNR) the mean is sqrt(a_s) x0 and the variance 1 - a_s, so
sample and v models walk the exact table there.
"""

from __future__ import annotations

import math

import torch

from diffctl.samplers.base import Callback, DenoiserCall, GridSampler, SamplingGrid, Step
from diffctl.samplers.noise import Generator, randn_like
from diffctl.schedules.noise_schedule import posterior_from_alpha_bars


def sample_ancestral(model: DenoiserCall, grid: SamplingGrid, x: torch.Tensor,
                     variance: str = "posterior", generator: Generator = None,
                     callback: Callback = None) -> torch.Tensor:
    n = len(grid)
    for i, t in enumerate(grid.timesteps.tolist()):
        a, a_next = grid.alpha_bars[i], grid.alpha_bars_next[i]
        x_prev = x
        x0, _ = model(x, t, float(a))
        mean, var = posterior_from_alpha_bars(x0, x, a.to(x.dtype), a_next.to(x.dtype))
        if variance == "beta":
            var = 1 - a / a_next
        x = mean
        if i < n - 1 and float(var) > 0:
            x = x + math.sqrt(float(var)) * randn_like(x, generator)
        if callback is not None:
            callback(Step(i, t, x, x0, len(grid), x_prev))
    return x


class AncestralSampler(GridSampler):
    """Registered as ``ancestral``; config: ``variance``, ``spacing``, ``final_alpha_one``."""

    deterministic = False
    exact_zero_alpha_bar = True

    def solve(self, model, scheduler, grid, x, generator, callback):
        return sample_ancestral(model, grid, x, self.config.variance, generator, callback)
