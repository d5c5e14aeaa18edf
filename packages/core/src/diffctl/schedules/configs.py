"""Config models of the noise schedules (no torch: imported when plugins are listed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffctl.config import ComponentConfig


class ScheduleConfig(ComponentConfig):
    """Fields shared by every discrete noise schedule."""

    kind: str = Field("linear", description="Beta recipe; fixed by the registered name.")
    num_train_timesteps: int = Field(1000, ge=2, le=100_000,
                                     description="T, the number of training timesteps.")
    rescale_zero_terminal_snr: bool = Field(
        False, description="Rescale so alpha_bar at t = T-1 is exactly 0 (Lin et al. 2024).")


class _BetaRangeConfig(ScheduleConfig):
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta at t = 0.")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta at t = T-1.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.beta_end <= self.beta_start:
            raise ValueError("beta_end must be greater than beta_start")
        return self


class LinearScheduleConfig(_BetaRangeConfig):
    kind: Literal["linear"] = Field("linear", description="Beta recipe.")


class ScaledLinearScheduleConfig(_BetaRangeConfig):
    kind: Literal["scaled-linear"] = Field("scaled-linear", description="Beta recipe.")
    beta_start: float = Field(0.00085, gt=0, lt=1, description="beta at t = 0.")
    beta_end: float = Field(0.012, gt=0, lt=1, description="beta at t = T-1.")


class SigmoidScheduleConfig(_BetaRangeConfig):
    kind: Literal["sigmoid"] = Field("sigmoid", description="Beta recipe.")


class CosineScheduleConfig(ScheduleConfig):
    kind: Literal["cosine"] = Field("cosine", description="Beta recipe.")
    s: float = Field(0.008, ge=0, lt=1, description="Offset that keeps beta_0 from vanishing.")
    max_beta: float = Field(0.999, gt=0, le=0.999999,
                            description="Clip betas at this value to avoid a singularity at T.")
