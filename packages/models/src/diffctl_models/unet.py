"""UNet noise predictors for small images: ``unet-mini`` and its scaled ``student-unet`` s.

The architecture is the convolutional encoder-decoder with skip connections of Ronneberger et
al. 2015 ("U-Net"), in the form DDPM uses for diffusion (Ho et al. 2020): residual conv blocks
with GroupNorm that receive a sinusoidal time embedding, a downsampling path, a bottleneck and
an upsampling path that concatenates the matching skip. This small version keeps DDPM's
structure but drops self-attention and uses one block per level, which is what 28-32 px
digits need (the reference MNIST DDPM UNet).

One class serves the teacher and the students: ``size_factor`` scales every width, so a
student is the same network, only narrower (unet-mini is size_factor 1.0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffctl_models.embeddings import ClassEmbedding, TimeEmbedding, check_image_inputs
from diffctl_models.image_configs import StudentUNetConfig, UNetConfig


def scaled_width(width: int, factor: float, multiple: int, floor: int) -> int:
    """``width * factor`` rounded up to a multiple of ``multiple``, and at least ``floor``.

    Rounding up (never down) keeps every GroupNorm valid and means a tiny factor still gives a
    working network; a factor of 1.0 leaves a width that is already a multiple unchanged.
    """
    # the small tolerance keeps e.g. 64 * 0.3 * 10 / 10 from rounding up a whole step
    scaled = math.ceil(width * factor / multiple - 1e-9) * multiple
    return max(floor, scaled)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU, plus the time embedding, plus a residual.

    ``out = skip(x) + conv2(drop(act(norm2(conv1(act(norm1(x))) + proj(emb)))))``: the
    pre-activation residual block of DDPM (Ho et al. 2020, after Zagoruyko & Komodakis's wide
    ResNets). The embedding (time, plus class when conditional) is projected to the block's
    channels and added to every pixel after the first convolution. ``skip`` is a 1x1
    convolution when the channel count changes, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int,
                 dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.SiLU()
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halves the resolution with a stride-2 3x3 convolution (learned, as in DDPM)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Doubles the resolution: nearest-neighbour upsampling, then a 3x3 convolution (the
    DDPM choice; avoids the checkerboard artefacts of transposed convolutions)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """UNet denoiser, called as ``model(x_t, t, cond=None)`` on (B, C, H, W) images.

    Layout for ``channel_mults = [1, 2, 2]`` and 32 px (widths before ``size_factor``)::

        stem 3x3 conv C -> 64                                   32x32
        level 0: ConvBlock 64 -> 64   (skip s0), Downsample   32 -> 16
        level 1: ConvBlock 64 -> 128  (skip s1), Downsample   16 -> 8
        level 2: ConvBlock 128 -> 128 (skip s2), Downsample    8 -> 4
        bottleneck: ConvBlock 128 -> 128 (two 3x3 convs with GroupNorm)
        up 2: Upsample, concat s2, ConvBlock 256 -> 128        4 -> 8
        up 1: Upsample, concat s1, ConvBlock 256 -> 128        8 -> 16
        up 0: Upsample, concat s0, ConvBlock 192 -> 64        16 -> 32
        head: 1x1 conv 64 -> C

    Every ConvBlock receives ``emb = MLP(sinusoidal(t)) [+ class_table[label]]`` (width
    ``time_dim``). The widths are ``base_channels * mult * size_factor`` rounded up to a
    multiple of ``groups`` (see :func:`scaled_width`); ``time_dim`` is scaled likewise (a
    multiple of 8, at least 16). Attributes: ``prediction``, ``in_channels``, ``image_size``,
    ``num_classes``, ``size_factor``, ``channels`` (width of each level) and ``time_dim``.
    """

    def __init__(self, config: UNetConfig | StudentUNetConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        self.in_channels, self.image_size = config.resolved_shape()
        self.num_classes = config.num_classes
        self.size_factor = float(getattr(config, "size_factor", 1.0))
        levels = len(config.channel_mults)
        if self.image_size % 2 ** levels:
            raise ValueError(f"image_size {self.image_size} is not divisible by {2 ** levels} "
                             f"(2 ** len(channel_mults), one halving per level)")
        groups = config.groups
        self.channels = [scaled_width(config.base_channels * m, self.size_factor, groups, groups)
                         for m in config.channel_mults]
        for width in self.channels:
            if width % groups:
                raise ValueError(f"channel count {width} is not divisible by groups {groups}")
        self.time_dim = (config.time_dim if self.size_factor == 1.0
                         else scaled_width(config.time_dim, self.size_factor, 8, 16))
        emb_dim = self.time_dim

        self.time_embed = TimeEmbedding(emb_dim, "sinusoidal", config.num_train_timesteps, "silu")
        self.class_embed = (ClassEmbedding(config.num_classes, emb_dim, config.class_dropout)
                            if config.num_classes else None)

        def block(cin: int, cout: int) -> ConvBlock:
            return ConvBlock(cin, cout, emb_dim, groups, config.dropout)

        self.stem = nn.Conv2d(self.in_channels, self.channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        width = self.channels[0]
        for out in self.channels:
            self.down_blocks.append(block(width, out))
            self.downsamples.append(Downsample(out))
            width = out
        self.bottleneck = block(width, width)
        self.upsamples = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for skip in reversed(self.channels):  # the up path mirrors the down path
            self.upsamples.append(Upsample(width))
            self.up_blocks.append(block(width + skip, skip))
            width = skip
        self.head = nn.Conv2d(width, self.in_channels, 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        t, cond = check_image_inputs(x_t, t, cond, self.in_channels, self.image_size,
                                     self.num_classes)
        emb = self.time_embed(t)
        if self.class_embed is not None:
            emb = emb + self.class_embed(cond, x_t.shape[0], x_t.device)
        emb = emb.to(x_t.dtype)
        h = self.stem(x_t)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h, emb)
        for up, block in zip(self.upsamples, self.up_blocks, strict=True):
            h = block(torch.cat([up(h), skips.pop()], dim=1), emb)
        return self.head(h)
