"""Held-out denoising loss, averaged over the whole range of timesteps.

Each held-out example is noised at ``k`` timesteps spread evenly over [0, T-1] (a stratified
grid shifted per example) with noise from a fixed seed, so the value is deterministic and
comparable across checkpoints. Uniform weighting, the model's own prediction target.
"""

from __future__ import annotations

import torch

from diffctl.training.objective import diffusion_loss


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, scheduler, data: torch.Tensor, *, timesteps: int = 20,
              seed: int = 0, batch_size: int = 4096,
              labels: torch.Tensor | None = None) -> float:
    """Mean squared prediction error on ``data`` over ``timesteps`` noise levels each."""
    T = scheduler.num_train_timesteps
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for k in range(timesteps):
        for start in range(0, len(data), batch_size):
            x0 = data[start:start + batch_size].to(device)
            offset = torch.rand(len(x0), generator=gen)
            t = ((k + offset) * T / timesteps).long().clamp(max=T - 1).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device, x0.dtype)
            cond = labels[start:start + batch_size].to(device) if labels is not None else None
            loss = diffusion_loss(model, scheduler, x0, t, noise, cond)
            total += float(loss) * len(x0)
            count += len(x0)
    model.train(was_training)
    return total / max(count, 1)
