"""Config models of the core's own metrics (no torch: imported when plugins are listed)."""

from __future__ import annotations

from pydantic import Field

from diffctl.config import ComponentConfig


class TestLossConfig(ComponentConfig):
    """The held-out denoising loss, averaged over timesteps spread evenly over [0, T-1]."""

    __test__ = False  # a pydantic model, not a pytest test class

    timesteps: int = Field(20, ge=1, description="Noise levels per held-out example (a "
                           "stratified grid over [0, T-1], shifted per example).")
    examples: int | None = Field(None, ge=1, description="Held-out examples used; null: all "
                                 "of the dataset's test split.")
