"""The discrete noise schedule: betas, alpha_bar, the forward process and its posterior.

Notation (Ho et al. 2020): alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s, and
x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for integer t in [0, T-1].
Tables are kept in float64 and cast to the data's dtype and device at use.
"""

from __future__ import annotations

import torch

from diffctl.schedules import betas as recipes
from diffctl.schedules.configs import ScheduleConfig
from diffctl.schedules.parametrization import convert
from diffctl.schedules.timesteps import time_grid


def _betas_for(config: ScheduleConfig) -> torch.Tensor:
    T = config.num_train_timesteps
    if config.kind == "linear":
        return recipes.linear_betas(T, config.beta_start, config.beta_end)
    if config.kind == "scaled-linear":
        return recipes.scaled_linear_betas(T, config.beta_start, config.beta_end)
    if config.kind == "sigmoid":
        return recipes.sigmoid_betas(T, config.beta_start, config.beta_end)
    if config.kind == "cosine":
        return recipes.cosine_betas(T, config.s, config.max_beta)
    raise ValueError(f"unknown beta schedule {config.kind!r}")


def _gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``table[t]`` shaped (B, 1, 1, ...) to broadcast against ``like``, in its dtype/device."""
    values = table.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return values.reshape(-1, *([1] * (like.ndim - 1)))


class NoiseSchedule:
    """A discrete variance-preserving schedule (the ``Scheduler`` protocol).

    Build it through the registry (``diffctl.create("scheduler", "cosine")``) or directly
    from a config; ``NoiseSchedule.from_betas`` wraps any custom beta table.
    """

    def __init__(self, config: ScheduleConfig):
        self.config = config
        betas = _betas_for(config)
        if config.rescale_zero_terminal_snr:
            betas = recipes.rescale_zero_terminal_snr(betas)
        self._set_betas(betas)

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> NoiseSchedule:
        """A schedule over an explicit beta table (values in (0, 1])."""
        self = cls.__new__(cls)
        self.config = None
        self._set_betas(betas.to(torch.float64))
        return self

    def _set_betas(self, betas: torch.Tensor) -> None:
        self.betas = betas
        self.alphas = 1 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        self.num_train_timesteps = int(betas.shape[0])

    # -- summaries -------------------------------------------------------------------------
    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) per timestep (0 at a zero-SNR end)."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    def alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer timesteps ``t`` (B,), broadcastable against ``like``."""
        return _gather(self.alphas_cumprod, t, like)

    # -- forward process -------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x0) with the given noise (Ho et al. 2020, eq. 4)."""
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eqs. 6-7).

        At t = 0 the "previous" alpha_bar is 1, so the mean is x0 and the variance 0.
        """
        return self.posterior_between(x0, x_t, t, t - 1)

    def posterior_between(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_s | x_t, x0) for any s < t (s = -1 meaning clean data, alpha_bar = 1).

        With alpha_{t|s} = alpha_bar_t / alpha_bar_s and beta_{t|s} = 1 - alpha_{t|s}, the mean is
        sqrt(alpha_bar_s) beta_{t|s} / (1 - alpha_bar_t) x0
        + sqrt(alpha_{t|s}) (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t
        and the variance (1 - alpha_bar_s) / (1 - alpha_bar_t) beta_{t|s}.
        """
        a_t = self.alpha_bar(t, x_t)
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        a_s = _gather(table, s + 1, x_t)
        return posterior_from_alpha_bars(x0, x_t, a_t, a_s)

    # -- prediction targets ----------------------------------------------------------------
    def convert(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                source: str, target: str) -> torch.Tensor:
        """Re-express a model output (``epsilon``, ``sample`` or ``v``) as another target."""
        return convert(output, x_t, self.alpha_bar(t, x_t), source, target)

    # -- sampling grid ---------------------------------------------------------------------
    def timesteps(self, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
        """Strictly decreasing sampling timesteps (int64), diffusers' spacing conventions."""
        return time_grid(self.num_train_timesteps, num_steps, spacing)

    def __repr__(self) -> str:
        name = self.config.kind if self.config is not None else "custom"
        return f"NoiseSchedule({name}, T={self.num_train_timesteps})"


def posterior_from_alpha_bars(
    x0: torch.Tensor, x_t: torch.Tensor, a_t: torch.Tensor, a_s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_s | x_t, x0) given alpha_bar at t and at s < t."""
    alpha_ts = a_t / a_s
    beta_ts = 1 - alpha_ts
    coef_x0 = a_s.sqrt() * beta_ts / (1 - a_t)
    coef_xt = alpha_ts.sqrt() * (1 - a_s) / (1 - a_t)
    variance = (1 - a_s) / (1 - a_t) * beta_ts
    return coef_x0 * x0 + coef_xt * x_t, variance
