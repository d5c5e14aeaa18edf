"""Drawing samples from a trained denoiser: batches, labels, inpainting, progress.

Sample ``i`` of a draw with sampling seed ``s`` depends only on (s, i): its x_T and every
stochastic step come from its own stream (:class:`diffctl.samplers.noise.PerSampleGenerator`),
so the batch size never changes a sample. Progress is reported through ``on_progress(done,
total)`` in sampler steps summed over batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.runs.components import Components, num_classes
from diffctl.samplers.base import Inpaint, Trajectory
from diffctl.samplers.noise import initial_noise

Progress = Callable[[int, int], None] | None

#: Known regions of :func:`inpaint_mask`.
INPAINT_REGIONS = ("left", "right", "top", "bottom", "center")


def default_batch_size(sample_shape: tuple[int, ...]) -> int:
    """Samples per batch when the config leaves it open: 5000 vectors, 250 images."""
    return 5000 if len(sample_shape) == 1 else 250


def class_labels(model: Any, start: int, size: int, device: torch.device,
                 labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """Labels of samples ``start .. start + size - 1``: given ones, else i mod num_classes
    (equal class counts; a sample's label depends on its index only)."""
    k = num_classes(model)
    if k is None:
        return None
    if labels is not None:
        return labels[start:start + size].to(device)
    return torch.arange(start, start + size, device=device) % k


class _StepCounter:
    """A sampler callback that reports steps done over all batches (and feeds a trajectory)."""

    def __init__(self, total: int, on_progress: Progress, trajectory: Trajectory | None):
        self.total, self.done = total, 0
        self.on_progress, self.trajectory = on_progress, trajectory

    def __call__(self, step) -> None:
        if self.trajectory is not None:
            self.trajectory(step)
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def generate(components: Components, model: torch.nn.Module, n: int, num_steps: int,
             seed: int, batch_size: int, trajectory: Trajectory | None = None,
             labels: torch.Tensor | None = None, on_progress: Progress = None,
             sampler: Any = None) -> torch.Tensor:
    """Draw ``n`` samples with ``sampler`` (default: the run's); sample i depends only on
    (seed, i). Class-conditional models get ``labels`` (default: i mod num_classes); the
    ``trajectory`` records the first batch."""
    if n < 1:
        raise UsageError(f"the number of samples must be at least 1, got {n}")
    sampler = sampler or components.sampler
    device = next(model.parameters()).device
    shape = tuple(components.dataset.sample_shape)
    batches = -(-n // batch_size)
    counter = _StepCounter(batches * num_steps, on_progress, None)
    out = []
    model.eval()
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        x_T, gen = initial_noise((size, *shape), seed, offset=start, device=device)
        cond = class_labels(model, start, size, device, labels)
        counter.trajectory = trajectory if start == 0 else None
        if counter.trajectory is not None:
            counter.trajectory.start(x_T)
        out.append(sampler.sample(model, components.scheduler, x_T, num_steps, cond=cond,
                                  generator=gen, callback=counter).cpu())
    return torch.cat(out)


def inpaint_mask(region: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A (1, 1, H, W) mask, 1 where pixels are known: ``left`` keeps the left half, ...,
    ``center`` keeps the border and fills the centre."""
    _, h, w = shape
    mask = torch.zeros(1, 1, h, w)
    regions = {"left": (slice(None), slice(0, w // 2)), "right": (slice(None), slice(w // 2, w)),
               "top": (slice(0, h // 2), slice(None)), "bottom": (slice(h // 2, h), slice(None))}
    if region == "center":
        mask[:] = 1
        mask[..., h // 4:h - h // 4, w // 4:w - w // 4] = 0
    elif region in regions:
        mask[(..., *regions[region])] = 1
    else:
        raise UsageError(f"unknown inpainting region {region!r}; choose "
                         f"{', '.join(INPAINT_REGIONS)}")
    return mask


@dataclass
class Inpainted:
    """Held-out images, the mask, and the model's fill of the unknown region."""

    original: torch.Tensor  # (n, C, H, W)
    filled: torch.Tensor  # (n, C, H, W), known pixels equal to the original
    mask: torch.Tensor  # (1, 1, H, W), 1 = known

    def unknown_box(self) -> tuple[Any, ...]:
        """Index of the smallest rectangle holding every unknown pixel."""
        rows, cols = torch.nonzero(self.mask[0, 0] == 0, as_tuple=True)
        return (..., slice(int(rows.min()), int(rows.max()) + 1),
                slice(int(cols.min()), int(cols.max()) + 1))


def inpaint(components: Components, model: torch.nn.Module, images: torch.Tensor,
            labels: torch.Tensor | None, region: str, num_steps: int, seed: int,
            batch_size: int, on_progress: Progress = None, sampler: Any = None) -> Inpainted:
    """Keep ``region`` of each image and let the model fill the rest, in batches."""
    sampler = sampler or components.sampler
    shape = tuple(components.dataset.sample_shape)
    mask = inpaint_mask(region, shape)
    device = next(model.parameters()).device
    counter = _StepCounter(-(-len(images) // batch_size) * num_steps, on_progress, None)
    filled = []
    for start in range(0, len(images), batch_size):
        ref = images[start:start + batch_size]
        x_T, gen = initial_noise((len(ref), *shape), seed, offset=start, device=device)
        cond = class_labels(model, start, len(ref), device, labels)
        filled.append(sampler.sample(model, components.scheduler, x_T, num_steps, cond=cond,
                                     generator=gen, callback=counter,
                                     inpaint=Inpaint(mask.to(device), ref.to(device))).cpu())
    return Inpainted(images, torch.cat(filled), mask)
