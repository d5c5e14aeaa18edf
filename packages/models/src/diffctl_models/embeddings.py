"""Timestep embeddings: fixed sinusoidal features and learned MLP embeddings of t."""

from __future__ import annotations

import math

import torch
from torch import nn

from diffctl_models.utils import make_activation


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Fixed features ``[sin(t w_i), cos(t w_i)]``, ``w_i = max_period^(-i / (dim // 2))``.

    The transformer position encoding (Vaswani et al. 2017, sec. 3.5), as used for diffusion
    timesteps by Ho et al. 2020, with sines and cosines concatenated rather than interleaved.
    ``t`` (B,) of any numeric dtype, in timestep units; returns (B, dim) float32. An odd
    ``dim`` gets a trailing zero column. Pure: no parameters, no state.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """Maps integer timesteps (B,) to learned vectors (B, dim).

    ``kind="sinusoidal"``: :func:`sinusoidal_embedding` of t followed by Linear-act-Linear
    (the DDPM recipe, Ho et al. 2020). ``kind="learned"``: Linear-act-Linear on the scalar
    ``t / num_train_timesteps`` in [0, 1). The learned variant is an MLP rather than an
    ``nn.Embedding`` table so neighbouring timesteps share parameters (a smooth function of t
    that every training step updates) and non-integer t from a continuous-time wrapper works.
    """

    def __init__(self, dim: int, kind: str = "sinusoidal", num_train_timesteps: int = 1000,
                 activation: str = "silu"):
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown time embedding {kind!r}; choose sinusoidal or learned")
        self.dim, self.kind, self.num_train_timesteps = dim, kind, num_train_timesteps
        in_dim = dim if kind == "sinusoidal" else 1
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), make_activation(activation),
                                 nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "sinusoidal":
            features = sinusoidal_embedding(t, self.dim)
        else:
            features = (t.to(torch.float32) / self.num_train_timesteps)[:, None]
        return self.mlp(features)
