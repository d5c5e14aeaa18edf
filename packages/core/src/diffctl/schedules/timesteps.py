"""Sampling time grids over the T training timesteps.

``spacing`` has diffusers' ``timestep_spacing`` meaning (see Lin et al. 2024, Table 2):

- ``leading``: multiples of T // n counting up from 0, then reversed (never reaches T-1);
- ``trailing``: T - k * T/n rounded, minus one, so the first step is at t = T-1;
- ``linspace``: n points evenly spaced on [0, T-1], rounded.

The grid is a strictly decreasing integer tensor of length n inside [0, T-1].
"""

from __future__ import annotations

import numpy as np
import torch

SPACINGS = ("leading", "trailing", "linspace")


def time_grid(num_train_timesteps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Timesteps t_0 > t_1 > ... > t_{n-1} for an n-step sampler (int64)."""
    T, n = num_train_timesteps, num_steps
    if not 1 <= n <= T:
        raise ValueError(f"num_steps must be in [1, {T}] for T = {T}, got {n}")
    if spacing == "leading":
        ratio = T // n
        grid = np.arange(n)[::-1] * ratio
    elif spacing == "trailing":
        grid = np.round(T - np.arange(n) * (T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        grid = np.round(np.linspace(0, T - 1, n))[::-1]
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    return torch.from_numpy(np.ascontiguousarray(grid).astype(np.int64))
