"""Evaluate many checkpoints of one run, in parallel worker processes.

Each worker rebuilds the run's components from ``config.yaml``, loads one checkpoint, draws
samples and computes the metrics. Workers use ``cpu_count // workers`` torch threads each, so
one worker may use every core and N workers share them.

Metrics with expensive real-side work (FID's reference statistics, KID's and precision/
recall's reference features) expose ``prepare_reference(real, folder)``. The sweep calls it
once in the parent, on the same real sample the workers draw, so the real side is computed
once per sweep: with the metric's stats cache on, the workers read the parent's cache entry;
with ``cache: false`` the parent writes a reference file into a temporary folder and the
workers get option overrides that point at it (``reference_stats`` / ``reference_features``).
Every result row carries the metrics' ``metadata`` (where they have one) under
``metric_metadata``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from diffctl.errors import UsageError


def evaluate_checkpoint(run_dir: str, checkpoint: str, metrics: list[str], num_samples: int,
                        num_steps: int | None, seed: int, threads: int,
                        use_ema: bool = True,
                        metric_overrides: dict[str, dict[str, Any]] | None = None,
                        device: str | None = None) -> dict[str, Any]:
    """Metrics of one checkpoint (runs in a worker process). ``metric_overrides`` are
    merged over the run's ``eval.metric_options`` per metric (see :func:`prepare_references`).
    """
    import json

    import torch

    from diffctl.registry import get_registry
    from diffctl.runs.run import (
        generate,
        heldout_inputs,
        load_run_model,
        metric_options_on,
        metric_values,
        sample_batch_size,
    )

    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    config, components, model = load_run_model(Path(run_dir), checkpoint=checkpoint,
                                               use_ema=use_ema, device=device)
    steps = num_steps or config.sample.num_steps
    samples = generate(components, model, num_samples, steps, seed,
                       sample_batch_size(config, components))
    real = components.dataset.reference(num_samples, seed + 1)
    registry = get_registry()
    options = metric_options_on(config, registry, next(model.parameters()).device)
    for name, values in (metric_overrides or {}).items():
        options[name] = {**options.get(name, {}), **values}
    metadata: dict[str, Any] = {}
    values = metric_values(registry, metrics, samples, real, options,
                           heldout_inputs(config, components, model), metadata)
    state = json.loads((Path(run_dir) / "checkpoints" / checkpoint / "state.json").read_text())
    row = {"checkpoint": checkpoint, "epoch": state["epoch"], "step": state["step"], **values,
           "seconds": round(time.perf_counter() - started, 3)}
    if metadata:
        row["metric_metadata"] = metadata
    return row


def prepare_references(run_dir: Path, metrics: list[str], num_samples: int, seed: int,
                       folder: str | Path | None = None
                       ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Let each metric that can prepare its real side do it now, once.

    Returns ``(sources, overrides)``: ``{metric: computed | cache | none}`` for the metrics
    that have ``prepare_reference``, and the option overrides under which workers use the
    prepared result (non-empty only for reference files written into ``folder``, i.e. metrics
    with ``cache: false``). Only the dataset is built to draw the real sample, the same one
    :func:`evaluate_checkpoint` draws.
    """
    from diffctl.registry import get_registry
    from diffctl.runs.config import load_yaml, resolve

    registry = get_registry()
    config = resolve(load_yaml(Path(run_dir) / "config.yaml"), registry)
    sources: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    real = None
    for name in metrics:
        metric = registry.create("metric", name, config.eval.metric_options.get(name))
        if not hasattr(metric, "prepare_reference"):
            continue
        if real is None:
            dataset = registry.create("dataset", config.dataset.name, config.dataset.options())
            real = dataset.reference(num_samples, seed + 1)
        sources[name], options = metric.prepare_reference(real, folder)
        if options:
            overrides[name] = options
    return sources, overrides


#: Thread-count variables of the numerical libraries (OpenMP, OpenBLAS, MKL, ...).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _init_worker(threads: int) -> None:
    """Start of a worker process: cap every library's threads at this worker's share of the
    cores before numpy, scikit-learn or torch is imported (N workers x all cores each would
    oversubscribe the machine), then pay the imports and the plugin loading once."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    from diffctl.registry import get_registry

    torch.set_num_threads(threads)
    get_registry()


def sweep(run_dir: Path, checkpoints: list[str], metrics: list[str], num_samples: int,
          num_steps: int | None, seed: int, workers: int = 1,
          device: str | None = None, threads: int | None = None) -> list[dict[str, Any]]:
    """Evaluate ``checkpoints`` of ``run_dir`` with ``workers`` processes, in epoch order, on
    ``device`` (default: the run's train.device), each process using ``threads`` threads
    (default: its share of the cores, ``cpu_count // workers``)."""
    if not checkpoints:
        raise UsageError(f"run {run_dir} has no checkpoints to evaluate")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    with tempfile.TemporaryDirectory(prefix="diffctl-sweep-") as folder:
        _, overrides = prepare_references(run_dir, metrics, num_samples, seed, folder)
        args = [(str(run_dir), c, metrics, num_samples, num_steps, seed, threads, True,
                 overrides, device) for c in checkpoints]
        if workers == 1:
            results = [evaluate_checkpoint(*a) for a in args]
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                     initializer=_init_worker, initargs=(threads,)) as pool:
                results = list(pool.map(evaluate_checkpoint, *zip(*args, strict=True)))
    return sorted(results, key=lambda r: r["epoch"])
