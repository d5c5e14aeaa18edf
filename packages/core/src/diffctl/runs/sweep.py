"""Evaluate many checkpoints of one run, in parallel worker processes.

Each worker rebuilds the run's components from ``config.yaml``, loads one checkpoint, draws
samples and computes the metrics. Workers use ``cpu_count // workers`` torch threads each, so
one worker may use every core and N workers share them. Metrics with expensive real-side
work (FID's reference statistics, KID's reference features) expose ``prepare_reference(real)``;
the sweep calls it once in the parent, so every worker reads the result from the cache instead
of computing it again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from diffctl.errors import UsageError


def evaluate_checkpoint(run_dir: str, checkpoint: str, metrics: list[str], num_samples: int,
                        num_steps: int | None, seed: int, threads: int,
                        use_ema: bool = True) -> dict[str, Any]:
    """Metrics of one checkpoint (runs in a worker process)."""
    import json

    import torch

    from diffctl.runs.run import generate, load_run_model, metric_values, sample_batch_size

    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    config, components, model = load_run_model(Path(run_dir), checkpoint=checkpoint,
                                               use_ema=use_ema)
    from diffctl.registry import get_registry

    steps = num_steps or config.sample.num_steps
    samples = generate(components, model, num_samples, steps, seed,
                       sample_batch_size(config, components))
    real = components.dataset.reference(num_samples, seed + 1)
    values = metric_values(get_registry(), metrics, samples, real, config.eval.metric_options)
    state = json.loads((Path(run_dir) / "checkpoints" / checkpoint / "state.json").read_text())
    return {"checkpoint": checkpoint, "epoch": state["epoch"], "step": state["step"],
            **values, "seconds": round(time.perf_counter() - started, 3)}


def prepare_references(run_dir: Path, metrics: list[str], num_samples: int,
                       seed: int) -> dict[str, str]:
    """Let each metric that can compute and cache its real side do it now, once; returns
    ``{metric: computed | cache | none}`` for those that can."""
    from diffctl.registry import get_registry
    from diffctl.runs.config import load_yaml, resolve
    from diffctl.runs.run import build

    registry = get_registry()
    config = resolve(load_yaml(Path(run_dir) / "config.yaml"), registry)
    prepared: dict[str, str] = {}
    real = None
    for name in metrics:
        metric = registry.create("metric", name, config.eval.metric_options.get(name))
        if not hasattr(metric, "prepare_reference"):
            continue
        if real is None:  # the same real sample evaluate_checkpoint draws
            real = build(config, registry).dataset.reference(num_samples, seed + 1)
        prepared[name] = metric.prepare_reference(real)
    return prepared


def sweep(run_dir: Path, checkpoints: list[str], metrics: list[str], num_samples: int,
          num_steps: int | None, seed: int, workers: int = 1) -> list[dict[str, Any]]:
    """Evaluate ``checkpoints`` of ``run_dir`` with ``workers`` processes, in epoch order."""
    if not checkpoints:
        raise UsageError(f"run {run_dir} has no checkpoints to evaluate")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    threads = max(1, (os.cpu_count() or 1) // workers)
    prepare_references(run_dir, metrics, num_samples, seed)
    args = [(str(run_dir), c, metrics, num_samples, num_steps, seed, threads)
            for c in checkpoints]
    if workers == 1:
        results = [evaluate_checkpoint(*a) for a in args]
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(evaluate_checkpoint, *zip(*args, strict=True)))
    return sorted(results, key=lambda r: r["epoch"])
