"""Config models of the image denoisers (no torch: imported when plugins are listed).

``in_channels`` and ``image_size`` default to None: a run fills them from its dataset, and a
model built standalone uses 1 channel and 32 px (:data:`STANDALONE_CHANNELS`,
:data:`STANDALONE_IMAGE_SIZE`). Checks that need the resolved size run again when the model
is built.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from diffctl.config import ComponentConfig

STANDALONE_CHANNELS = 1
STANDALONE_IMAGE_SIZE = 32

Prediction = Literal["epsilon", "sample", "v"]


class ImageDenoiserConfig(ComponentConfig):
    """Fields shared by the image denoisers (mirrors the MLP configs' prediction and T)."""

    prediction: Prediction = Field(
        "epsilon", description="What the network outputs: noise, clean sample or v.")
    num_train_timesteps: int = Field(
        1000, ge=1, description="T of the schedule (a run sets it from its scheduler); t is "
        "an integer in [0, T-1].")
    in_channels: int | None = Field(
        None, ge=1, description="Image channels. None: taken from the dataset by the run; "
        f"{STANDALONE_CHANNELS} channel when built standalone.")
    image_size: int | None = Field(
        None, ge=1, description="Height and width of the (square) images. None: taken from the "
        f"dataset by the run; {STANDALONE_IMAGE_SIZE} px when built standalone.")
    num_classes: int | None = Field(
        None, ge=1, description="Classes to condition on (None: unconditional). The label -1 "
        "and cond=None select a learned null class.")
    class_dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Probability of replacing a label by the null class "
        "in training (classifier-free guidance); ignored when unconditional.")

    def resolved_shape(self) -> tuple[int, int]:
        """``(in_channels, image_size)`` with the standalone defaults filled in."""
        return (self.in_channels or STANDALONE_CHANNELS,
                self.image_size or STANDALONE_IMAGE_SIZE)


# -- UNet family ---------------------------------------------------------------------------------
class _UNetFields(ImageDenoiserConfig):
    """Fields of the UNet family (unet-mini and its students)."""

    base_channels: int = Field(64, ge=1, description="Channels of the first level.")
    channel_mults: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 2, 2], min_length=1,
        description="Channel multiplier of each level; every level halves the resolution "
        "(3 levels: 32 -> 16 -> 8 -> 4), so image_size must be divisible by "
        "2 ** len(channel_mults).")
    time_dim: int = Field(128, ge=2, description="Width of the time embedding (sinusoidal "
                          "features, then a 2-layer MLP).")
    groups: int = Field(8, ge=1, description="GroupNorm groups; every channel count must be a "
                        "multiple of it.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout inside each conv block "
                           "(0.1 as in Ho et al. 2020).")

    @model_validator(mode="after")
    def _check_levels(self) -> Self:
        levels = len(self.channel_mults)
        factor = 2 ** levels
        if self.image_size is not None and self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by {factor} "
                             f"(2 ** len(channel_mults), one halving per level)")
        return self


class UNetConfig(_UNetFields):
    """unet-mini: the reference MNIST DDPM UNet, no attention."""

    @model_validator(mode="after")
    def _check_groups(self) -> Self:
        for mult in self.channel_mults:
            channels = self.base_channels * mult
            if channels % self.groups:
                raise ValueError(f"base_channels * mult = {channels} is not divisible by groups "
                                 f"{self.groups}")
        return self


class StudentUNetConfig(_UNetFields):
    """student-unet: the unet-mini family with every width scaled by size_factor."""

    size_factor: float = Field(
        0.5, gt=0.0, le=1.0, description="Width of the student relative to the teacher "
        "(unet-mini = 1.0). Channels become base_channels * mult * size_factor rounded up to a "
        "multiple of groups (at least groups); time_dim scales likewise (multiple of 8, at "
        "least 16).")


# -- DiT -------------------------------------------------------------------------------------------
class DiTConfig(ImageDenoiserConfig):
    """dit: Diffusion Transformer (Peebles & Xie 2023) with grouped-query attention."""

    patch_size: int = Field(4, ge=1, description="Side of the square patches (4: 64 tokens "
                            "at 32 px).")
    hidden: int = Field(384, ge=1, description="Width of the token stream.")
    depth: int = Field(12, ge=1, description="Transformer blocks.")
    heads: int = Field(8, ge=1, description="Query heads; must divide hidden.")
    kv_heads: int = Field(2, ge=1, description="Key/value heads (grouped-query attention, "
                          "Ainslie et al. 2023); must divide heads. heads: plain multi-head, "
                          "1: multi-query.")
    mlp_ratio: float = Field(4.0, gt=0.0, description="MLP width relative to hidden.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention weights "
                           "and MLP outputs.")
    pos_embed: Literal["sincos", "learned"] = Field(
        "sincos", description="Patch positions: fixed 2-D sin-cos (DiT/MAE) or learned.")
    conditioning: Literal["token", "adaln-zero"] = Field(
        "token", description="token: time + class embedding prepended as one extra token "
        "(dropped before the head); adaln-zero: per-block adaptive LayerNorm shift/scale/gate "
        "regressed from it, zero-initialised (DiT paper).")
    activation_checkpointing: bool = Field(
        False, description="In training, keep only each block's input and recompute its "
        "activations during the backward pass: less memory for about one more forward pass "
        "per step; same outputs and gradients.")

    @model_validator(mode="after")
    def _check_shapes(self) -> Self:
        if self.image_size is not None and self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size "
                             f"{self.patch_size}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads {self.kv_heads} does not divide heads {self.heads}")
        if self.pos_embed == "sincos" and self.hidden % 4:
            raise ValueError(f"pos_embed sincos needs hidden divisible by 4, got {self.hidden}")
        return self


class DiTTinyConfig(DiTConfig):
    """dit-tiny: a small DiT for quick CPU runs."""

    hidden: int = Field(128, ge=1, description="Width of the token stream.")
    depth: int = Field(4, ge=1, description="Transformer blocks.")
    heads: int = Field(4, ge=1, description="Query heads; must divide hidden.")


class DiTSConfig(DiTConfig):
    """dit-s: DiT-S (hidden 384, depth 12, 6 heads)."""

    heads: int = Field(6, ge=1, description="Query heads; must divide hidden.")


class DiTBConfig(DiTConfig):
    """dit-b: DiT-B (hidden 768, depth 12, 12 heads)."""

    hidden: int = Field(768, ge=1, description="Width of the token stream.")
    heads: int = Field(12, ge=1, description="Query heads; must divide hidden.")
    kv_heads: int = Field(4, ge=1, description="Key/value heads (grouped-query attention, "
                          "Ainslie et al. 2023); must divide heads. heads: plain multi-head, "
                          "1: multi-query.")
