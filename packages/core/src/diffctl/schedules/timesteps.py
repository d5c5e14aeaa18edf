"""Sampling time grids over the T training timesteps.

``spacing`` has diffusers' ``timestep_spacing`` meaning (see Lin et al. 2024, Table 2):

- ``leading``: multiples of T // n counting up from 0, then reversed (never reaches T-1);
- ``trailing``: T - k * T/n rounded, minus one, so the first step is at t = T-1. The values
  are those of diffusers' ``np.arange(T, 0, -T/n)`` (see :func:`time_grid`), whose fill
  rounds differently from ``T - k * (T/n)`` at ties for some (T, n), e.g. T = 1000, n = 48;
- ``linspace``: n points evenly spaced on [0, T-1], rounded.

The grid is a strictly decreasing integer tensor of length n inside [0, T-1].
"""

from __future__ import annotations

import numpy as np
import torch

from diffctl.errors import UsageError

SPACINGS = ("leading", "trailing", "linspace")


def time_grid(num_train_timesteps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Timesteps t_0 > t_1 > ... > t_{n-1} for an n-step sampler (int64)."""
    T, n = num_train_timesteps, num_steps
    if not 1 <= n <= T:
        raise UsageError(f"num_steps must be in [1, {T}] for T = {T} training timesteps, "
                         f"got {n}")
    if spacing == "leading":
        ratio = T // n
        grid = np.arange(n)[::-1] * ratio
    elif spacing == "trailing":
        # Float arange as diffusers' DDIMScheduler builds it: numpy fills it as T + k * delta
        # with delta = (T - T/n) - T, not T - k * (T/n), and the two round differently at .5
        # ties. Its length is ceil(T / (T/n)) in floating point, which is n + 1 for some
        # (T, n) (e.g. T = 1000, n = 914; T = 999, n = 13), never less than n; the extra
        # entry is the -1 after t = 0, so the first n entries are the grid.
        grid = np.round(np.arange(T, 0, -T / n))[:n].astype(np.int64) - 1
    elif spacing == "linspace":
        grid = np.round(np.linspace(0, T - 1, n))[::-1]
    else:
        raise UsageError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    return torch.from_numpy(np.ascontiguousarray(grid).astype(np.int64))
