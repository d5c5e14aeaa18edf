"""The denoising objective: regress the model's declared target, optionally SNR-weighted.

Loss for one example: w(t) * || f(x_t, t) - target ||^2, with target the noise, x0 or v
(Salimans & Ho 2022) according to the denoiser's ``prediction``. Weightings:

- ``uniform``: w = 1 (Ho et al. 2020's simple loss for epsilon prediction);
- ``min-snr``: Min-SNR-gamma (Hang et al. 2023, eq. 10), expressed for each target:
  min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for x0, min(SNR, gamma) / (SNR + 1) for v.
"""

from __future__ import annotations

import torch

from diffctl.schedules.parametrization import target_from


def snr_weight(snr: torch.Tensor, prediction: str, weighting: str, gamma: float) -> torch.Tensor:
    """Per-example loss weight (B,) for the given target and weighting."""
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min-snr":
        raise ValueError(f"unknown loss weighting {weighting!r}")
    clipped = torch.clamp(snr, max=gamma)
    if prediction == "epsilon":
        return clipped / snr.clamp_min(1e-12)
    if prediction == "sample":
        return clipped
    return clipped / (snr + 1)


def diffusion_loss(
    model: torch.nn.Module,
    scheduler,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    cond: torch.Tensor | None = None,
    weighting: str = "uniform",
    gamma: float = 5.0,
    prediction: str | None = None,
) -> torch.Tensor:
    """Mean weighted squared error of the model's prediction at noise level t.

    ``prediction`` defaults to ``model.prediction``; the error is taken in float32 even when
    the model runs under bf16 autocast (the output is cast to the target's dtype).
    """
    prediction = prediction or getattr(model, "prediction", "epsilon")
    x_t = scheduler.q_sample(x0, t, noise)
    a = scheduler.alpha_bar(t, x0)
    target = target_from(x0, noise, a, prediction)
    output = model(x_t, t, cond=cond).to(target.dtype)
    per_example = (output - target).pow(2).flatten(1).mean(dim=1)
    snr = (a / (1 - a).clamp_min(1e-12)).flatten()
    return (snr_weight(snr, prediction, weighting, gamma) * per_example).mean()
