"""A residual MLP denoiser with BatchNorm, the usual strong baseline on 2-D data."""

from __future__ import annotations

import torch
from torch import nn

from diffctl_models.configs import ResidualMLPConfig
from diffctl_models.embeddings import TimeEmbedding
from diffctl_models.mlp import prepare_inputs
from diffctl_models.utils import make_activation


class ResidualBlock(nn.Module):
    """``act(h + Linear(Dropout(act(BN(Linear(h))) + P(act(emb)))))``.

    The time embedding is projected per block and added after the first normalised
    activation, as DDPM's ResBlock adds it after its first convolution (Ho et al. 2020).
    """

    def __init__(self, hidden: int, time_dim: int, activation: str, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.act1 = make_activation(activation)
        self.time_proj = nn.Sequential(make_activation(activation), nn.Linear(time_dim, hidden))
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act2 = make_activation(activation)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm(self.fc1(h))) + self.time_proj(emb)
        return self.act2(h + self.fc2(self.dropout(y)))


class ResidualMLPDenoiser(nn.Module):
    """Input projection, ``num_blocks`` :class:`ResidualBlock` s, output projection.

    Defaults: width 512, 5 blocks, time embedding 64, ReLU, dropout 0.0 (off; the 2-D sets
    are large next to the model); ``size_factor`` scales the width of the residual stream
    (size studies). Every block receives the time embedding (added, see
    :class:`ResidualBlock`). BatchNorm makes training batch-dependent (train with B >= 2); in
    eval mode the running statistics are used, so outputs do not depend on the batch.
    """

    def __init__(self, config: ResidualMLPConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        self.time_embed = TimeEmbedding(config.time_dim, config.time_embedding,
                                        config.num_train_timesteps, config.activation)
        hidden = config.width(config.hidden)
        self.input = nn.Linear(config.data_dim, hidden)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden, config.time_dim, config.activation, config.dropout)
            for _ in range(config.num_blocks))
        self.output = nn.Linear(hidden, config.data_dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        t = prepare_inputs(x_t, t, cond, self.config.data_dim)
        emb = self.time_embed(t).to(x_t.dtype)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)
