"""The plain MLP noise predictor for low-dimensional data."""

from __future__ import annotations

import torch
from torch import nn

from diffctl_models.configs import MLPConfig
from diffctl_models.embeddings import TimeEmbedding
from diffctl_models.utils import make_activation


def prepare_inputs(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                   data_dim: int) -> torch.Tensor:
    """Check ``x_t`` (B, data_dim) and ``cond`` (unconditional only); return t as (B,)."""
    if x_t.ndim != 2 or x_t.shape[1] != data_dim:
        raise ValueError(f"expected x_t of shape (B, {data_dim}), got {tuple(x_t.shape)}")
    if cond is not None:
        raise ValueError("this denoiser is unconditional: cond must be None")
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"expected t of shape ({x_t.shape[0]},), got {tuple(t.shape)}")
    return t.to(x_t.device)


class MLPDenoiser(nn.Module):
    """``[x_t, emb(t)] -> (Linear-act) x num_layers -> Linear -> data_dim``.

    The time embedding (:class:`~diffctl_models.embeddings.TimeEmbedding`) is concatenated with
    ``x_t``; defaults are three hidden layers of 128 with ReLU. Called as
    ``model(x_t, t, cond=None)`` with ``t`` int64 (B,); outputs ``prediction`` (B, data_dim).
    ``size_factor`` scales the hidden width (the time embedding keeps its width).
    """

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        self.time_embed = TimeEmbedding(config.time_dim, config.time_embedding,
                                        config.num_train_timesteps, config.activation)
        layers: list[nn.Module] = []
        width, hidden = config.data_dim + config.time_dim, config.width(config.hidden)
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, hidden), make_activation(config.activation)]
            width = hidden
        layers.append(nn.Linear(width, config.data_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        t = prepare_inputs(x_t, t, cond, self.config.data_dim)
        emb = self.time_embed(t).to(x_t.dtype)
        return self.net(torch.cat([x_t, emb], dim=-1))
