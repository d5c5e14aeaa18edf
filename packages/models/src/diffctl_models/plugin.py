"""Registers the model package's denoisers with diffctl (no torch import here)."""

from __future__ import annotations

from diffctl import hookimpl
from diffctl_models.configs import MLPConfig, ResidualMLPConfig


@hookimpl
def register_components(registry) -> None:
    """Vector denoisers for the 2-D workflows; image models arrive with their own issue."""
    add = registry.add
    add("denoiser", "mlp", factory="diffctl_models.mlp:MLPDenoiser", config=MLPConfig,
        summary="Plain MLP on [x, time embedding]: 3 hidden layers of 128, ReLU.")
    add("denoiser", "residual-mlp", factory="diffctl_models.residual_mlp:ResidualMLPDenoiser",
        config=ResidualMLPConfig,
        summary="Residual MLP with BatchNorm and per-block time embedding: 5 blocks of 512.")
