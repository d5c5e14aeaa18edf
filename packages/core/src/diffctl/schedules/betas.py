"""Beta recipes of the discrete noise schedules, as pure functions returning float64 tensors.

Each matches diffusers' ``DDPMScheduler(beta_schedule=...)`` for the same parameters; the
float64 computation is closer to the exact values than diffusers' float32 one.
"""

from __future__ import annotations

import math

import torch


def linear_betas(num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def scaled_linear_betas(num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas whose square roots are evenly spaced (the latent-diffusion schedule)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2


def sigmoid_betas(num_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas rising along a logistic curve sampled on [-6, 6] (GeoDiff, Xu et al. 2022)."""
    s = torch.sigmoid(torch.linspace(-6.0, 6.0, num_steps, dtype=torch.float64))
    return s * (beta_end - beta_start) + beta_start


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas from alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2) (Nichol & Dhariwal 2021, eq. 17).

    ``beta_i = 1 - alpha_bar((i+1)/T) / alpha_bar(i/T)``, clipped at ``max_beta`` (their eq. 17
    and the clipping they describe right after it).
    """

    def alpha_bar(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    i = torch.arange(num_steps, dtype=torch.float64)
    betas = 1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps)
    return betas.clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has SNR 0 and the first is unchanged.

    Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1.
    The returned betas end in exactly 1.
    """
    sqrt_ab = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas
