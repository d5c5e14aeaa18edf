"""Config models of the samplers (no torch: imported when plugins are listed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from diffctl.config import ComponentConfig

Spacing = Literal["leading", "trailing", "linspace"]


class SamplerConfig(ComponentConfig):
    """Fields shared by every sampler: how the time grid is laid out."""

    spacing: Spacing = Field(
        "trailing",
        description="Time grid layout, as diffusers' timestep_spacing: leading, trailing, "
        "linspace. 'trailing' starts at t = T-1.",
    )
    final_alpha_one: bool = Field(
        True,
        description="Last step goes to alpha_bar = 1 (clean data); false stops at "
        "alpha_bar[0] like diffusers' set_alpha_to_one=False.",
    )
    clip_denoised: float | None = Field(
        None, gt=0.0,
        description="Clamp each x0 estimate to [-c, c] (images in [-1, 1]: 1.0), as "
        "diffusers' clip_sample; null: no clamping.",
    )
    guidance_scale: float = Field(
        1.0, ge=0.0,
        description="Classifier-free guidance scale s (class-conditional denoisers): "
        "u + s (c - u); 1 = plain conditional, 0 = unconditional.",
    )


class AncestralConfig(SamplerConfig):
    variance: Literal["posterior", "beta"] = Field(
        "posterior",
        description="Reverse variance: the posterior's beta-tilde ('posterior', DDPM's "
        "fixed-small) or beta ('beta', fixed-large).",
    )


class DDIMConfig(SamplerConfig):
    eta: float = Field(0.0, ge=0.0, le=1.0,
                       description="Stochasticity: 0 deterministic (DDIM), 1 DDPM's posterior.")


class EulerConfig(SamplerConfig):
    s_churn: float = Field(
        0.0, ge=0.0, description="EDM churn: total noise re-injection (0: deterministic ODE).")


class HeunConfig(SamplerConfig):
    s_churn: float = Field(
        0.0, ge=0.0, description="EDM churn: total noise re-injection (0: deterministic ODE).")


class DPMSolverPP2MConfig(SamplerConfig):
    lower_order_final: bool = Field(
        True,
        description="Take the final step with first order, also when the grid stops at "
        "alpha_bar[0] (final_alpha_one: false) rather than at clean data (where it always is "
        "first order). On such grids the last step is much longer than the one before it and "
        "the second-order extrapolation overshoots; diffusers' lower_order_final does this "
        "below 15 steps, its euler_at_final at any count, like this option.")
