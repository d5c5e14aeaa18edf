"""Euler-Maruyama on the reverse-time SDE (Song et al. 2021, eq. 6), in sigma space.

With sigma^2 = (1 - ab) / ab, x_ve = x / sqrt(ab) and the model's clean estimate D, the score
is (D - x_ve) / sigma^2. One step from sigma to sigma' < sigma, with d = sigma^2 - sigma'^2:

    x_ve' = x_ve + d * score + sqrt(d) * z

The last step adds no noise, so it lands on D. The core's ``GridSampler`` supplies the time
grid, the model call in any prediction type, guidance, inpainting and ``torch.no_grad``.
"""

from __future__ import annotations

import math

from diffctl.samplers.base import GridSampler, Step
from diffctl.samplers.noise import randn_like


class EulerMaruyamaSampler(GridSampler):
    """Registered as ``euler-maruyama``; config: ``spacing``, ``final_alpha_one``."""

    deterministic = False

    def solve(self, model, scheduler, grid, x, generator, callback):
        n = len(grid)
        for i, t in enumerate(grid.timesteps.tolist()):
            a, a_next = float(grid.alpha_bars[i]), float(grid.alpha_bars_next[i])
            x0, _ = model(x, t, a)
            var, var_next = (1 - a) / a, (1 - a_next) / a_next
            x_ve = x / math.sqrt(a)
            x_ve = x_ve + (var - var_next) / var * (x0 - x_ve)
            if i < n - 1:
                x_ve = x_ve + math.sqrt(var - var_next) * randn_like(x, generator)
            x = math.sqrt(a_next) * x_ve
            if callback is not None:
                callback(Step(i, t, x, x0, n))
        return x
