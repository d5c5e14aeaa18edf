"""Conversions between the three prediction targets, given alpha_bar at the noise level.

With x_t = sqrt(a) x0 + sqrt(1 - a) eps (a = alpha_bar_t), the model may predict eps, x0
("sample") or v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022, Sec. 4). All functions
broadcast ``alpha_bar`` against the data; pass it shaped (B, 1, ...) or as a scalar tensor.
"""

from __future__ import annotations

from typing import Literal

import torch

Prediction = Literal["epsilon", "sample", "v"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "sample", "v")


def x0_and_eps(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both the clean-data and the noise estimate implied by a model ``output``.

    For eps-prediction at alpha_bar = 0 the x0 estimate is undefined; callers keep alpha_bar
    above zero on the sampling grid (see ``samplers.grid``).
    """
    a = alpha_bar.to(x_t.dtype)
    sa, s1a = a.sqrt(), (1 - a).sqrt()
    if prediction == "epsilon":
        return (x_t - s1a * output) / sa, output
    if prediction == "sample":
        return output, (x_t - sa * output) / s1a
    if prediction == "v":
        return sa * x_t - s1a * output, s1a * x_t + sa * output
    raise ValueError(f"unknown prediction type {prediction!r}; expected one of {PREDICTIONS}")


def target_from(
    x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The regression target of ``prediction`` for a clean sample and its noise."""
    a = alpha_bar.to(x0.dtype)
    if prediction == "epsilon":
        return eps
    if prediction == "sample":
        return x0
    if prediction == "v":
        return a.sqrt() * eps - (1 - a).sqrt() * x0
    raise ValueError(f"unknown prediction type {prediction!r}; expected one of {PREDICTIONS}")


def convert(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, source: str, target: str
) -> torch.Tensor:
    """Re-express a model output predicted as ``source`` as a ``target`` prediction."""
    if source == target:
        return output
    x0, eps = x0_and_eps(output, x_t, alpha_bar, source)
    return target_from(x0, eps, alpha_bar, target)
