"""Diffusion Transformer (DiT) with grouped-query attention.

Peebles & Xie 2023, "Scalable Diffusion Models with Transformers": the image is cut into
``patch_size`` x ``patch_size`` patches, each linearly embedded into a token (a ViT, Dosovitskiy
et al. 2021), position embeddings are added, a stack of transformer blocks processes the
tokens and a linear head maps every token back to its patch of the prediction.

Two ways to feed in the time step and the class:

- ``token``: the time embedding plus the class embedding form one extra token prepended to
  the patch tokens; the blocks are ordinary pre-LayerNorm transformer blocks and the extra
  token is dropped before the head (in-context conditioning, the simplest variant of the DiT
  paper's section 3.2, and the one of the reference CIFAR-10 project).
- ``adaln-zero``: the paper's best variant. Each block regresses from the conditioning vector
  a shift, scale and gate for its two sub-layers (adaptive LayerNorm); the regressions and the
  head are zero-initialised, so at initialisation every block is the identity and the model
  outputs zeros.

Attention is grouped-query attention (Ainslie et al. 2023, "GQA"): ``heads`` query heads
share ``kv_heads`` key/value heads, each serving ``heads // kv_heads`` consecutive query
heads. It shrinks the key/value projections; ``kv_heads == heads`` is ordinary multi-head
attention and ``kv_heads == 1`` multi-query attention (Shazeer 2019).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from diffctl_models.embeddings import (
    ClassEmbedding,
    TimeEmbedding,
    check_image_inputs,
    sincos_position_embedding_2d,
)
from diffctl_models.image_configs import DiTConfig

#: Sinusoidal features of t fed to the time MLP (DiT's frequency_embedding_size).
TIME_FREQUENCY_DIM = 256


class GroupedQueryAttention(nn.Module):
    """Self-attention with ``heads`` query heads and ``kv_heads`` key/value heads.

    One fused projection gives q (``heads * head_dim`` columns) followed by k and v
    (``kv_heads * head_dim`` each); with ``kv_heads == heads`` the layout equals
    ``torch.nn.MultiheadAttention``'s ``in_proj``. The product is computed by
    ``F.scaled_dot_product_attention(..., enable_gqa=True)``, which lets query head ``h`` use
    key/value head ``h // (heads // kv_heads)`` without materialising repeated keys.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads or heads % kv_heads:
            raise ValueError(f"need heads | dim and kv_heads | heads, got dim {dim}, heads "
                             f"{heads}, kv_heads {kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.dropout = dropout
        kv_dim = kv_heads * self.head_dim
        self.qkv = nn.Linear(dim, dim + 2 * kv_dim)
        self.out = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, heads, N, d), k and v (B, kv_heads, N, d) of tokens x (B, N, dim)."""
        b, n, _ = x.shape
        kv_dim = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.heads * self.head_dim, kv_dim, kv_dim], dim=-1)
        q = q.view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        q, k, v = self.split_heads(x)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.kv_heads != self.heads)
        return self.out(out.transpose(1, 2).reshape(b, n, dim))


class FeedForward(nn.Sequential):
    """Linear -> GELU (tanh approximation, as DiT) -> Dropout -> Linear -> Dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive LayerNorm's affine step on tokens (B, N, D) with per-example (B, D) params."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block ``x + attn(norm(x))``, then ``x + mlp(norm(x))`` (token mode)."""

    def __init__(self, dim: int, heads: int, kv_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupedQueryAttention(dim, heads, kv_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AdaLNZeroBlock(nn.Module):
    """DiT block with adaLN-Zero conditioning (Peebles & Xie 2023, fig. 3).

    ``SiLU -> Linear`` regresses six vectors from the conditioning ``c`` (B, D): shift, scale
    and gate for the attention and for the MLP. ``x + gate * sublayer(modulate(norm(x)))``;
    the LayerNorms have no affine parameters (the modulation provides them). The regression
    is zero-initialised by :class:`DiT`, so gates start at zero and the block at the identity.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = GroupedQueryAttention(dim, heads, kv_heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            raise ValueError("adaLN-Zero blocks need the conditioning vector c")
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None, :] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Diffusion Transformer, called as ``model(x_t, t, cond=None)`` on (B, C, H, W) images.

    patchify (a ``patch_size``-strided convolution) -> + position embedding -> ``depth``
    blocks -> final LayerNorm (adaptive in adaln-zero mode) -> Linear to ``patch_size ** 2 * C``
    per token -> unpatchify. The conditioning vector is ``MLP(sinusoidal_256(t))`` plus the
    class embedding when ``num_classes`` is set (label -1 / None: the null class).
    Attributes: ``prediction``, ``in_channels``, ``image_size``, ``num_classes``,
    ``num_patches``.

    Initialisation follows DiT: Xavier-uniform linear layers with zero biases, the patch
    embedding initialised like a linear layer, N(0, 0.02) for the time MLP, the class table
    and learned position embeddings; in adaln-zero mode the modulation regressions and the
    head are zero.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        self.in_channels, self.image_size = config.resolved_shape()
        self.num_classes = config.num_classes
        p, dim = config.patch_size, config.hidden
        if self.image_size % p:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {p}")
        self.patch_size, self.grid = p, self.image_size // p
        self.num_patches = self.grid ** 2
        self.adaln = config.conditioning == "adaln-zero"
        self.activation_checkpointing = config.activation_checkpointing

        self.patch_embed = nn.Conv2d(self.in_channels, dim, p, stride=p)
        if config.pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_position_embedding_2d(self.grid, dim)[None],
                                 persistent=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.time_embed = TimeEmbedding(dim, "sinusoidal", config.num_train_timesteps, "silu",
                                        frequency_dim=TIME_FREQUENCY_DIM)
        self.class_embed = (ClassEmbedding(config.num_classes, dim, config.class_dropout)
                            if config.num_classes else None)
        block = AdaLNZeroBlock if self.adaln else TransformerBlock
        self.blocks = nn.ModuleList(
            block(dim, config.heads, config.kv_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=not self.adaln, eps=1e-6)
        self.final_modulation = (nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
                                 if self.adaln else None)
        self.head = nn.Linear(dim, p * p * self.in_channels)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        weight = self.patch_embed.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=0.02)
        for layer in self.time_embed.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.table.weight, std=0.02)
        if self.adaln:
            zeroed = [block.modulation for block in self.blocks]
            for module in [*zeroed, self.final_modulation, self.head]:
                for param in module.parameters():
                    nn.init.zeros_(param)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, p * p * C) -> (B, C, H, W); token n covers patch (n // grid, n % grid)."""
        b, p, g, c = tokens.shape[0], self.patch_size, self.grid, self.in_channels
        x = tokens.reshape(b, g, g, p, p, c)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(b, c, g * p, g * p)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        t, cond = check_image_inputs(x_t, t, cond, self.in_channels, self.image_size,
                                     self.num_classes)
        c = self.time_embed(t)
        if self.class_embed is not None:
            c = c + self.class_embed(cond, x_t.shape[0], x_t.device)
        c = c.to(x_t.dtype)
        x = self.patch_embed(x_t).flatten(2).transpose(1, 2) + self.pos_embed.to(x_t.dtype)
        if self.adaln:
            for block in self.blocks:
                x = self._block(block, x, c)
            shift, scale = self.final_modulation(c).chunk(2, dim=-1)
            x = modulate(self.final_norm(x), shift, scale)
        else:
            x = torch.cat([c[:, None, :], x], dim=1)
            for block in self.blocks:
                x = self._block(block, x, None)
            x = self.final_norm(x[:, 1:])
        return self.unpatchify(self.head(x))

    def _block(self, block: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """One block; with activation checkpointing (training with autograd on) its
        activations are recomputed in the backward pass instead of stored. The RNG state is
        replayed, so dropout draws the same masks both times."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, c, use_reentrant=False)
        return block(x, c)
