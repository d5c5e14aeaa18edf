"""Euler steps on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma.

Karras et al. 2022 (EDM), eq. 3 and Algorithm 2 with first-order steps. ``s_churn > 0``
adds EDM's stochastic churn: before each step the noise level is raised to
sigma_hat = sigma (1 + gamma), gamma = min(s_churn / n, sqrt(2) - 1), by adding fresh noise.
Without churn this is algebraically DDIM with eta = 0. In ratio form, with r = sigma_next /
sigma_hat, a step is x_ve' = r x_ve + (1 - r) D, applied to the VP state (see
:func:`sigma_denoiser.ve_update`).
"""

from __future__ import annotations

import math

import torch

from diffctl.samplers.base import Callback, GridSampler, SamplingGrid, Step
from diffctl.samplers.noise import Generator, randn_like
from diffctl.samplers.sigma_denoiser import SigmaDenoiser, add_noise, grid_sigmas, ve_update


def churn(x: torch.Tensor, sigma: float, s_churn: float, n: int, generator: Generator
          ) -> tuple[torch.Tensor, float]:
    """EDM's noise injection: raise sigma to sigma_hat and add the matching noise.

    ``x`` is the VP state at sigma; the result is the VP state at sigma_hat.
    """
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_churn > 0 else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = add_noise(x, sigma, sigma_hat, randn_like(x, generator))
    return x, sigma_hat


def sample_euler(model: SigmaDenoiser, grid: SamplingGrid, x: torch.Tensor,
                 s_churn: float = 0.0, generator: Generator = None,
                 callback: Callback = None) -> torch.Tensor:
    sigmas = grid_sigmas(grid)
    n = len(grid)
    for i, t in enumerate(grid.timesteps.tolist()):
        x_prev = x
        x, sigma_hat = churn(x, sigmas[i], s_churn, n, generator)
        denoised = model(x, sigma_hat)
        r = sigmas[i + 1] / sigma_hat
        x = ve_update(x, sigma_hat, sigmas[i + 1], (1 - r, denoised))
        if callback is not None:
            callback(Step(i, t, x, denoised, len(grid), x_prev))
    return x


class EulerSampler(GridSampler):
    """Registered as ``euler``; config: ``s_churn``, ``spacing``, ``final_alpha_one``."""

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.config.s_churn == 0

    def solve(self, model, scheduler, grid, x, generator, callback):
        sigma_model = SigmaDenoiser(model, scheduler.alphas_cumprod)
        return sample_euler(sigma_model, grid, x, self.config.s_churn, generator, callback)
