"""Config models of the MLP denoisers (no torch: imported when plugins are listed)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from diffctl.config import ComponentConfig

Activation = Literal["relu", "silu", "gelu"]
TimeEmbeddingKind = Literal["learned", "sinusoidal"]


class DenoiserConfig(ComponentConfig):
    """Fields shared by the vector (MLP) denoisers."""

    data_dim: int = Field(2, ge=1, description="Dimension of x (2 for the 2-D datasets).")
    time_embedding: TimeEmbeddingKind = Field(
        "sinusoidal",
        description="sinusoidal: Vaswani et al. 2017 features of the integer t, then an MLP; "
        "learned: an MLP on t / num_train_timesteps.")
    time_dim: int = Field(32, ge=2, description="Width of the time embedding.")
    activation: Activation = Field("relu", description="Non-linearity: relu, silu or gelu.")
    prediction: Literal["epsilon", "sample", "v"] = Field(
        "epsilon", description="What the network outputs: noise, clean sample or v.")
    num_train_timesteps: int = Field(
        1000, ge=1, description="T of the schedule; normalises t for the learned embedding.")
    size_factor: float = Field(
        1.0, gt=0.0, le=1.0, description="Width relative to hidden (size studies): each "
        "hidden layer has ceil(hidden * size_factor) units, at least 1; 1.0 is the model as "
        "configured.")

    def width(self, hidden: int) -> int:
        """``hidden`` scaled by ``size_factor``, rounded up (1.0 leaves it unchanged)."""
        return max(1, math.ceil(hidden * self.size_factor - 1e-9))


class MLPConfig(DenoiserConfig):
    time_embedding: TimeEmbeddingKind = Field(
        "learned", description="learned: an MLP on t / num_train_timesteps (the reference "
        "2-D noise predictor); sinusoidal: Vaswani et al. 2017 features, then an MLP.")
    hidden: int = Field(128, ge=1, description="Width of each hidden layer.")
    num_layers: int = Field(3, ge=1, description="Hidden layers.")


class ResidualMLPConfig(DenoiserConfig):
    time_dim: int = Field(64, ge=2, description="Width of the time embedding.")
    hidden: int = Field(512, ge=1, description="Width of the residual stream.")
    num_blocks: int = Field(5, ge=1, description="Residual blocks.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside each block.")
