"""The trainer's config: optimiser, schedule, EMA, checkpoints, precision (no torch import)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from diffctl.config import ComponentConfig


class TrainConfig(ComponentConfig):
    epochs: int = Field(50, ge=1, description="Passes over the training split.")
    batch_size: int | Literal["auto"] = Field(
        128, description="Examples per optimisation step, or auto: the largest batch from "
        "max_batch_size down, halving, whose trial step fits in the device's memory (the "
        "size used is recorded in the checkpoints and the report).")
    max_batch_size: int = Field(1024, ge=1, description="With batch_size auto: the first "
                                "batch tried (capped at the training split's size).")
    lr: float = Field(1e-3, gt=0, description="Base learning rate (before lr_scaling).")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="Optimiser.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW).")
    lr_schedule: Literal["constant", "cosine"] = Field("constant",
                                                        description="LR shape over training.")
    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up steps.")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="Scale lr by batch_size / base_batch_size (linear or sqrt).")
    base_batch_size: int = Field(128, ge=1, description="Reference batch size for lr_scaling.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm; null: off.")
    ema_decay: float | None = Field(0.999, gt=0, lt=1, description="EMA decay; null: no EMA.")
    ema_warmup: bool = Field(
        True, description="Ramp the EMA decay up over early updates: min(decay, (1 + k) / (10 "
        "+ k)) at update k, below 0.999 for the first 8990 updates.")
    loss_weighting: Literal["uniform", "min-snr"] = Field(
        "uniform", description="Per-timestep loss weight (min-snr: Hang et al. 2023).")
    min_snr_gamma: float = Field(5.0, gt=0, description="gamma of min-SNR weighting.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto picks cuda > mps > cpu.")
    log_every: int = Field(50, ge=1, description="Record the training loss every N steps.")
    checkpoint_every: int = Field(10, ge=1, description="Checkpoint and evaluate every N epochs.")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Also save a resume-only checkpoint every N optimiser steps "
        "(checkpoints/partial/step-NNNNNNNN, the newest kept): never evaluated, sampled or "
        "exported; resuming continues from it exactly. null: epoch checkpoints only.")
    best_metric: str = Field("test-loss", description="Metric that selects the best checkpoint.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement; null: never.")
    grad_accum_steps: int = Field(
        1, ge=1, description="Split each batch into this many micro-batches whose gradients "
        "add up to the whole batch's (one optimiser step per batch; batch_size stays the "
        "global batch and must be divisible by processes x grad_accum_steps).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16 or fp16: forward and loss under torch.autocast in that "
        "type (weights, optimiser and EMA stay float32); fp16 scales the loss with "
        "torch.amp.GradScaler, whose state the checkpoints keep.")
    num_workers: int = Field(
        1, ge=0, description="Worker processes that decode images for a streaming dataset "
        "(0: in the training process). Changes speed only, never results.")
    compile: bool = Field(False, description="Train through torch.compile(model) (the "
                          "checkpoints hold the plain module's weights).")
    loggers: list[str] = Field(
        default_factory=lambda: ["jsonl"], description="Where training and evaluation records "
        "go (kind logger): jsonl is always on; csv, tensorboard or a plugin's.")
    logger_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Config of each logger by name, e.g. "
        "{tensorboard: {images: false}}.")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be a positive integer or auto, got {value!r}")
        return value

    @model_validator(mode="after")
    def _batch_splits_into_micro_batches(self) -> Self:
        if self.batch_size != "auto" and self.batch_size % self.grad_accum_steps:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by "
                             f"grad_accum_steps {self.grad_accum_steps}")
        return self
