"""Learning-rate schedules as multipliers of the base rate, per optimisation step."""

from __future__ import annotations

import math


def lr_multiplier(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 0 at the end
    (Loshchilov & Hutter 2017, SGDR without restarts)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def scaled_lr(lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """Large-batch learning rate: none, linear (Goyal et al. 2017) or square-root scaling."""
    ratio = batch_size / base_batch_size
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"unknown lr scaling {rule!r}")
