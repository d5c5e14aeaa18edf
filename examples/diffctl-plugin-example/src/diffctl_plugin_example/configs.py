"""Config models: pydantic only, so that listing plugins never imports torch or numpy."""

from __future__ import annotations

from pydantic import Field

from diffctl.config import ComponentConfig
from diffctl.datasets.configs import Points2DConfig
from diffctl.samplers.configs import SamplerConfig


class SpiralConfig(Points2DConfig):
    """Inherits n, seed, test_fraction and augment from the core's 2-D datasets."""

    arms: int = Field(2, ge=1, description="Spiral arms, evenly rotated about the origin.")
    turns: float = Field(1.5, gt=0.0, description="Turns each arm makes from centre to rim.")
    radius: float = Field(2.0, gt=0.0, description="Radius at the outer end of each arm.")
    noise: float = Field(0.05, ge=0.0,
                         description="Std of the Gaussian noise added to each coordinate.")


class EulerMaruyamaConfig(SamplerConfig):
    """Only the fields every sampler has (spacing, final_alpha_one, guidance_scale): the
    reverse-time SDE has no knob of its own."""


class EnergyDistanceConfig(ComponentConfig):
    exponent: float = Field(
        1.0, gt=0.0, lt=2.0,
        description="alpha in E|X - Y|^alpha; any value in (0, 2) gives a metric on "
        "distributions.")
    block_size: int = Field(1024, ge=1,
                            description="Rows per block of pairwise distances (memory bound).")


class MarkdownLoggerConfig(ComponentConfig):
    """log.md in the run directory (no settings)."""
