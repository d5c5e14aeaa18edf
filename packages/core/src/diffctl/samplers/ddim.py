"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12).

From x_t with estimates (x0, eps), step to the grid's next alpha_bar a':
    x' = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z,
    sigma = eta * sqrt((1 - a') / (1 - a) * (1 - a / a')).
eta = 0 is deterministic; eta = 1 gives the DDPM posterior variance. With all T steps and
eta = 0 this is the "deterministic DDPM" sampler. The step is well defined at alpha_bar = 0
(zero terminal SNR), so sample and v models walk the exact table there.
"""

from __future__ import annotations

import math

import torch

from diffctl.samplers.base import Callback, DenoiserCall, GridSampler, SamplingGrid, Step
from diffctl.samplers.noise import Generator, randn_like


def ddim_sigma(a: float, a_next: float, eta: float) -> float:
    """Noise scale of one DDIM step (Song et al. 2021, eq. 16)."""
    return eta * math.sqrt(max((1 - a_next) / (1 - a) * (1 - a / a_next), 0.0))


def ddim_eps_scale(a: float, a_next: float, eta: float) -> float:
    """sqrt(1 - a' - sigma^2), the weight of eps in a DDIM step, without cancellation.

    1 - a' - sigma^2 = (1 - a') (1 - a - eta^2 + eta^2 a / a') / (1 - a). Subtracting sigma^2
    from 1 - a' directly leaves a rounding residual where the exact value is tiny (eta = 1 with
    a << a', e.g. 0 at a zero-SNR alpha_bar = 0), and its square root is ~1e-8, not 0.
    """
    inner = (1 - eta * eta) + eta * eta * a / a_next - a
    return math.sqrt(max((1 - a_next) * inner / (1 - a), 0.0))


def sample_ddim(model: DenoiserCall, grid: SamplingGrid, x: torch.Tensor, eta: float = 0.0,
                generator: Generator = None, callback: Callback = None) -> torch.Tensor:
    for i, t in enumerate(grid.timesteps.tolist()):
        a, a_next = float(grid.alpha_bars[i]), float(grid.alpha_bars_next[i])
        x_prev = x
        x0, eps = model(x, t, a)
        sigma = ddim_sigma(a, a_next, eta)
        x = math.sqrt(a_next) * x0 + ddim_eps_scale(a, a_next, eta) * eps
        if sigma > 0:
            x = x + sigma * randn_like(x, generator)
        if callback is not None:
            callback(Step(i, t, x, x0, len(grid), x_prev))
    return x


class DDIMSampler(GridSampler):
    """Registered as ``ddim``; config: ``eta``, ``spacing``, ``final_alpha_one``."""

    exact_zero_alpha_bar = True

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.config.eta == 0

    def solve(self, model, scheduler, grid, x, generator, callback):
        return sample_ddim(model, grid, x, self.config.eta, generator, callback)
