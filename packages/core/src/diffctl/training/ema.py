"""Exponential moving average of model weights, with warm-up.

decay_k = min(decay, (1 + k) / (10 + k)) at update k, so early averages are not dominated by
the random initialisation (the warm-up used by TensorFlow's ExponentialMovingAverage with
num_updates). Buffers (e.g. BatchNorm statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """Keeps ``shadow``, an averaged copy of ``model``."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.lerp_(p.detach(), 1 - d)
        for s, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            s.copy_(b)
        self.updates += 1
