"""Prediction errors per timestep: each student against the teacher, every model against the
data's target, on held-out data with noise shared by all models.

The range [0, T) is cut into ``bins`` equal bins. Every held-out example is noised once per
bin, at a timestep drawn uniformly inside the bin, with noise from one generator seeded by
``seed``: every model sees exactly the same ``(x_t, t, cond)``. For model m and bin b::

    to_teacher[m][b] = mean over examples and dimensions of (f_m - f_teacher)^2
    to_target[m][b]  = mean of (f_m - y)^2,  y the target of the shared prediction type

``to_teacher`` is the heatmap of the size study (timestep bin x size); ``to_target`` is the
prediction error as a function of the timestep (the data loss, per bin, without weighting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from diffctl.schedules.parametrization import target_from


def timestep_bins(num_timesteps: int, bins: int) -> list[tuple[int, int]]:
    """``bins`` half-open ranges [lo, hi) covering 0 .. T-1 as evenly as integers allow."""
    if not 1 <= bins <= num_timesteps:
        raise ValueError(f"bins must be in [1, {num_timesteps}], got {bins}")
    edges = [round(i * num_timesteps / bins) for i in range(bins + 1)]
    return [(edges[i], edges[i + 1]) for i in range(bins)]


@torch.no_grad()
def prediction_errors(models: Sequence[tuple[str, torch.nn.Module]], scheduler: Any,
                      data: torch.Tensor, labels: torch.Tensor | None = None, *,
                      bins: int = 10, seed: int = 0, batch_size: int = 256,
                      teacher: str = "teacher",
                      on_progress: Callable[[int, int], None] | None = None
                      ) -> dict[str, Any]:
    """Squared errors per timestep bin of ``models`` (name, model) on ``data``; the model
    named ``teacher`` is the reference of ``to_teacher`` (module docstring). Models predict
    the same quantity (``prediction`` of the teacher)."""
    named = dict(models)
    if teacher not in named:
        raise ValueError(f"no model named {teacher!r} among {list(named)}")
    ref = named[teacher]
    prediction = getattr(ref, "prediction", "epsilon")
    device = next(ref.parameters()).device
    T = scheduler.num_train_timesteps
    ranges = timestep_bins(T, bins)
    gen = torch.Generator().manual_seed(seed)
    to_teacher = {name: [0.0] * bins for name in named if name != teacher}
    to_target = {name: [0.0] * bins for name in named}
    batches = -(-len(data) // batch_size)
    done = 0
    for b, (lo, hi) in enumerate(ranges):
        for start in range(0, len(data), batch_size):
            x0 = data[start:start + batch_size].to(device)
            n = len(x0)
            t = (lo + (torch.rand(n, generator=gen) * (hi - lo)).long()).clamp(lo, hi - 1)
            noise = torch.randn(x0.shape, generator=gen).to(device, x0.dtype)
            t = t.to(device)
            cond = labels[start:start + batch_size].to(device) if labels is not None else None
            x_t = scheduler.q_sample(x0, t, noise)
            target = target_from(x0, noise, scheduler.alpha_bar(t, x0), prediction)
            outputs = {teacher: ref(x_t, t, cond=cond).float()}
            for name, model in named.items():
                out = outputs.get(name)
                if out is None:
                    out = model(x_t, t, cond=cond).float()
                    to_teacher[name][b] += float((out - outputs[teacher]).pow(2).sum())
                to_target[name][b] += float((out - target).pow(2).sum())
            done += 1
            if on_progress is not None:
                on_progress(done, batches * bins)
    count = data[0].numel() * len(data)
    return {"bins": [list(r) for r in ranges], "examples": len(data), "seed": seed,
            "prediction": prediction,
            "to_teacher": {k: [v / count for v in vs] for k, vs in to_teacher.items()},
            "to_target": {k: [v / count for v in vs] for k, vs in to_target.items()}}
