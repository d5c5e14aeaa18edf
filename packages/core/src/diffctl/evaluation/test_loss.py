"""``test-loss``: the denoising loss on held-out data, a metric of the model, not of samples.

It scores the denoiser directly (:class:`diffctl.protocols.ModelMetric`): no sampling, so it is
cheap enough to compute at every checkpoint, and it is the trainer's default for picking the
best checkpoint and for early stopping.
"""

from __future__ import annotations

from typing import Any

import torch

from diffctl.evaluation.configs import TestLossConfig
from diffctl.training.heldout_loss import heldout_loss


class HeldOutLoss:
    """Registered as metric ``test-loss``; see :func:`diffctl.training.heldout_loss`."""

    higher_is_better = False

    def __init__(self, config: TestLossConfig | None = None):
        self.config = config or TestLossConfig()

    def score_model(self, denoiser: torch.nn.Module, scheduler: Any, data: torch.Tensor,
                    labels: torch.Tensor | None = None, seed: int = 0) -> dict[str, float]:
        n = self.config.examples or len(data)
        if len(data) == 0:
            raise ValueError("test-loss needs held-out examples (the test split is empty)")
        return {"test-loss": heldout_loss(denoiser, scheduler, data[:n],
                                          timesteps=self.config.timesteps, seed=seed,
                                          labels=labels[:n] if labels is not None else None)}
