"""Sampling from every model of a study from the same starting noise: the denoising frames,
the distance of each student's trajectory from the teacher's, and the sampling latency.

Sample i of every model starts from the same x_T (the per-sample stream of ``seed``,
:func:`diffctl.samplers.noise.initial_noise`) and is integrated by the same sampler object
(the teacher run's) with the same number of steps; stochastic samplers draw the same noise
for sample i too. A conditional model gets label i mod num_classes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from diffctl.runs.sampling import class_labels
from diffctl.samplers.base import Trajectory
from diffctl.samplers.noise import initial_noise

Named = Sequence[tuple[str, torch.nn.Module]]


def _states(model: torch.nn.Module, sampler: Any, scheduler: Any, shape: tuple[int, ...],
            n: int, start: int, steps: int, seed: int, frames: int) -> tuple[list[int],
                                                                            torch.Tensor]:
    """(timesteps, states (frames, n, *shape)) of samples start .. start + n - 1."""
    device = next(model.parameters()).device
    x_T, gen = initial_noise((n, *shape), seed, offset=start, device=device)
    cond = class_labels(model, start, n, device)
    traj = Trajectory(frames=frames)
    traj.start(x_T)
    sampler.sample(model, scheduler, x_T, steps, cond=cond, generator=gen, callback=traj)
    return traj.timesteps, torch.stack(traj.xs)


def denoising_frames(models: Named, sampler: Any, scheduler: Any, shape: tuple[int, ...], *,
                     num_samples: int = 4, steps: int = 50, frames: int = 10, seed: int = 0
                     ) -> dict[str, Any]:
    """``frames`` states from x_T to x_0 of the first ``num_samples`` samples of each model:
    ``states`` (models, frames, samples, *shape) in the order of ``models``."""
    names, stacks, timesteps = [], [], []
    for name, model in models:
        timesteps, states = _states(model, sampler, scheduler, shape, num_samples, 0, steps,
                                    seed, frames)
        names.append(name)
        stacks.append(states.numpy())
    return {"models": names, "timesteps": list(timesteps), "steps": steps, "seed": seed,
            "states": np.stack(stacks)}


def _spread(d: torch.Tensor) -> dict[str, list[float]]:
    """Mean, std and 10/50/90th percentiles over samples (dim 1) of a (states, n) table."""
    q = torch.quantile(d, torch.tensor([0.1, 0.5, 0.9], dtype=d.dtype), dim=1)
    return {"mean": d.mean(1).tolist(), "std": d.std(1, unbiased=False).tolist(),
            "p10": q[0].tolist(), "median": q[1].tolist(), "p90": q[2].tolist()}


def trajectory_distances(models: Named, sampler: Any, scheduler: Any, shape: tuple[int, ...],
                         *, num_samples: int = 64, steps: int = 50, seed: int = 0,
                         batch_size: int = 256, teacher: str = "teacher",
                         on_progress: Callable[[int, int], None] | None = None
                         ) -> dict[str, Any]:
    """Distance between each model's states and the teacher's at every step (state 0 is the
    shared x_T, state ``steps`` the sample), per sample the root mean square over dimensions,
    summarised over samples. ``final`` is that distance between final samples; ``reference``
    the same distance between the teacher's samples i and i+1 (different x_T), the scale at
    which two samples are unrelated."""
    named = dict(models)
    frames = steps + 1
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in named if name != teacher}
    reference: list[torch.Tensor] = []
    timesteps: list[int] = []
    starts = list(range(0, num_samples, batch_size))
    for k, start in enumerate(starts):
        n = min(batch_size, num_samples - start)
        timesteps, ref = _states(named[teacher], sampler, scheduler, shape, n, start, steps,
                                 seed, frames)
        final = ref[-1].flatten(1)
        reference.append((final - final.roll(1, 0)).pow(2).mean(1).sqrt())
        for name in chunks:
            _, states = _states(named[name], sampler, scheduler, shape, n, start, steps, seed,
                                frames)
            chunks[name].append((states - ref).flatten(2).pow(2).mean(2).sqrt())
        if on_progress is not None:
            on_progress(k + 1, len(starts))
    out: dict[str, Any] = {"steps": steps, "samples": num_samples, "seed": seed,
                           "timesteps": list(timesteps), "models": {}}
    for name, parts in chunks.items():
        d = torch.cat(parts, dim=1).double()  # (states, n)
        out["models"][name] = _spread(d) | {"final": {
            k: float(v[-1]) for k, v in _spread(d[-1:]).items()}}
    ref_d = torch.cat(reference).double()
    out["reference"] = {"mean": float(ref_d.mean()), "median": float(ref_d.median())}
    return out


def sampling_latency(models: Named, sampler: Any, scheduler: Any, shape: tuple[int, ...], *,
                     batch_size: int = 64, steps: int = 50, repeats: int = 5, warmup: int = 1,
                     seed: int = 0) -> dict[str, Any]:
    """Milliseconds per sample of drawing a batch of ``batch_size`` with ``steps`` steps:
    per model the median of ``repeats`` timed draws after ``warmup`` untimed ones. The timed
    draws go round the models in turn, so a change of machine load during the measurement
    falls on every model alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError("sampling_latency needs repeats >= 1 and warmup >= 0")
    inputs = {}
    for name, model in models:
        device = next(model.parameters()).device
        x_T, _ = initial_noise((batch_size, *shape), seed, device=device)
        inputs[name] = (model, x_T, class_labels(model, 0, batch_size, device), device)
    seconds: dict[str, list[float]] = {name: [] for name in inputs}
    for i in range(warmup + repeats):
        for name, (model, x_T, cond, device) in inputs.items():
            _sync(device)
            t0 = time.perf_counter()
            sampler.sample(model, scheduler, x_T, steps, cond=cond, seed=seed)
            _sync(device)
            if i >= warmup:
                seconds[name].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"batch_size": batch_size, "steps": steps, "repeats": repeats,
                           "warmup": warmup, "threads": torch.get_num_threads(),
                           "device": str(next(iter(inputs.values()))[3]), "models": {}}
    for name, times in seconds.items():
        median = statistics.median(times)
        out["models"][name] = {"ms_per_sample": 1000 * median / batch_size,
                               "median_seconds": median, "seconds": times}
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
