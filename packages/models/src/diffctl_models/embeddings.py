"""Embeddings of the denoisers' inputs: timesteps, class labels and 2-D patch positions.

Also the input check shared by the image denoisers (:func:`check_image_inputs`), which
normalises ``t`` and ``cond`` before they reach the embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffctl_models.utils import make_activation


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed features ``[sin(t w_i), cos(t w_i)]``, ``w_i = max_period^(-i / (dim // 2))``.

    The transformer position encoding (Vaswani et al. 2017, sec. 3.5), as used for diffusion
    timesteps by Ho et al. 2020, with sines and cosines concatenated rather than interleaved.
    ``t`` (B,) of any numeric dtype, in timestep units; returns (B, dim) of ``dtype``. An odd
    ``dim`` gets a trailing zero column. Pure: no parameters, no state.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = t.to(dtype)[:, None] * freqs[None, :]
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

    ``frequency_dim`` (sinusoidal only) sets the number of fixed features fed to the MLP when
    it should differ from the output width, e.g. DiT's 256 features mapped to the hidden width
    (Peebles & Xie 2023); default: ``dim``.
    """

    def __init__(self, dim: int, kind: str = "sinusoidal", num_train_timesteps: int = 1000,
                 activation: str = "silu", frequency_dim: int | None = None):
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown time embedding {kind!r}; choose sinusoidal or learned")
        self.dim, self.kind, self.num_train_timesteps = dim, kind, num_train_timesteps
        self.frequency_dim = frequency_dim or dim
        in_dim = self.frequency_dim if kind == "sinusoidal" else 1
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), make_activation(activation),
                                 nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype  # float64 models get float64 features
        if self.kind == "sinusoidal":
            features = sinusoidal_embedding(t, self.frequency_dim, dtype=dtype)
        else:
            features = (t.to(dtype) / self.num_train_timesteps)[:, None]
        return self.mlp(features)


class ClassEmbedding(nn.Module):
    """Class labels (B,) to vectors (B, dim), with a learned "null" class for guidance.

    The table has ``num_classes + 1`` rows; the last one is the null class, used where a label
    is -1 (any negative value) or where ``cond`` is None. In training mode each label is
    replaced by the null class with probability ``dropout`` (drawn from torch's global RNG, so
    the trainer's seeding makes it reproducible); the same network then also learns the
    unconditional model that classifier-free guidance needs (Ho & Salimans 2022).
    """

    def __init__(self, num_classes: int, dim: int, dropout: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"class dropout must be in [0, 1), got {dropout}")
        self.num_classes, self.dropout = num_classes, dropout
        self.table = nn.Embedding(num_classes + 1, dim)

    def labels(self, cond: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """Row indices (B,): the labels with -1 (and None) mapped to the null row, after the
        training-time label dropout."""
        null = self.num_classes
        if cond is None:
            return torch.full((batch,), null, dtype=torch.long, device=device)
        rows = torch.where(cond < 0, null, cond)
        if self.training and self.dropout > 0:
            drop = torch.rand(batch, device=device) < self.dropout
            rows = torch.where(drop, null, rows)
        return rows

    def forward(self, cond: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        return self.table(self.labels(cond, batch, device))


def sincos_position_embedding_2d(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position features (grid_size ** 2, dim), rows in raster order.

    Half of the channels encode the patch row and half its column, each with the 1-D features
    of :func:`sinusoidal_embedding` at integer positions (the encoding MAE and DiT use; He et
    al. 2022, Peebles & Xie 2023). ``dim`` must be divisible by 4 (sin and cos for 2 axes).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs dim divisible by 4, got {dim}")
    pos = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")
    return torch.cat([sinusoidal_embedding(rows.flatten(), dim // 2),
                      sinusoidal_embedding(cols.flatten(), dim // 2)], dim=1)


def check_image_inputs(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                       in_channels: int, image_size: int,
                       num_classes: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check a call of an image denoiser; return ``t`` as (B,) and ``cond`` as (B,) int64.

    ``x_t`` must be (B, in_channels, image_size, image_size); a scalar ``t`` is broadcast to
    the batch. Labels must lie in [0, num_classes) or be -1 (no label); an unconditional model
    (``num_classes`` None) accepts only ``cond=None`` or all -1. The label checks read the
    values (a device sync on GPUs) except under ``torch.compile``.
    """
    expected = (in_channels, image_size, image_size)
    if x_t.ndim != 4 or tuple(x_t.shape[1:]) != expected:
        raise ValueError(f"expected x_t of shape (B, {in_channels}, {image_size}, {image_size}), "
                         f"got {tuple(x_t.shape)}")
    batch = x_t.shape[0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"expected t of shape ({batch},), got {tuple(t.shape)}")
    t = t.to(x_t.device)
    if cond is None:
        return t, None
    if cond.shape != (batch,):
        raise ValueError(f"expected cond of shape ({batch},), got {tuple(cond.shape)}")
    if cond.is_floating_point():
        raise ValueError(f"cond must hold integer class labels, got dtype {cond.dtype}")
    cond = cond.to(device=x_t.device, dtype=torch.long)
    if not torch.compiler.is_compiling():
        if num_classes is None:
            if bool((cond >= 0).any()):
                raise ValueError("this denoiser is unconditional (num_classes is None) but got "
                                 "class labels; pass cond=None or set num_classes")
        elif bool(((cond < -1) | (cond >= num_classes)).any()):
            bad = cond[(cond < -1) | (cond >= num_classes)][0].item()
            raise ValueError(f"class label {bad} out of range: labels are in "
                             f"[0, {num_classes - 1}] or -1 for none")
    return t, cond
