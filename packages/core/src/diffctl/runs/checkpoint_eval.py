"""Evaluate many checkpoints of one run, in parallel worker processes.

Each worker opens the run, loads one checkpoint, draws samples from the ``sample`` stream of
the evaluation's seed and computes the metrics against the real sample of its ``reference``
stream. Workers use ``cpu_count // workers`` torch threads each, so one worker may use every
core and N workers share them.

A worker may keep the first samples of its checkpoint (``keep``); they travel back with its
row under :data:`KEPT` and are handed to ``on_samples``, never written into the rows.

A checkpoint that cannot be evaluated (unreadable, damaged, a metric failing on it) becomes a
failure row ``{"checkpoint", "error"}`` and the others go on; a worker process that dies is
reported and the checkpoints its pool lost are tried once more, each in a process of its own
(so the one that kills its worker cannot take the others with it).

Metrics with expensive real-side work (FID's reference statistics, KID's and precision/
recall's reference features) expose ``prepare_reference(real, folder)``. The parent calls it
once, on the same real sample the workers draw, so the real side is computed once per sweep:
with the metric's stats cache on, the workers read the parent's cache entry; with ``cache:
false`` the parent writes a reference file into a temporary folder and the workers get option
overrides that point at it (``reference_stats`` / ``reference_features``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from diffctl.errors import DiffctlError

log = logging.getLogger("diffctl")

#: Thread-count variables of the numerical libraries (OpenMP, OpenBLAS, MKL, ...).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
#: The key of a worker's row that carries its kept samples (a numpy array) to the parent.
KEPT = "_kept_samples"


def evaluate_checkpoint(run_dir: str, checkpoint: str, metrics: list[str], num_samples: int,
                        num_steps: int, seed: int, threads: int, use_ema: bool = True,
                        metric_overrides: dict[str, dict[str, Any]] | None = None,
                        device: str | None = None, keep: int = 0) -> dict[str, Any]:
    """Metrics of one checkpoint (runs in a worker process): a row of values, or a failure
    row ``{"checkpoint", "error"}``. ``metric_overrides`` are merged over the run's
    ``eval.metric_options`` per metric (see :func:`prepare_references`). The first ``keep``
    samples ride along under :data:`KEPT`."""
    import torch

    from diffctl.runs.evaluation import (
        generated_labels,
        heldout_inputs,
        metric_options_on,
        metric_values,
        reference_labels,
    )
    from diffctl.runs.run import Run
    from diffctl.runs.sampling import generate
    from diffctl.seeds import stream_seed

    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    try:
        run = Run.open(run_dir)
        loaded = run.load_model(checkpoint, use_ema=use_ema, device=device,
                                check_config=False)  # the parent process checked it
        components, model = loaded.components, loaded.model
        samples = generate(components, model, num_samples, num_steps,
                           stream_seed(seed, "sample"), run._sample_batch(components))
        ref_seed = stream_seed(seed, "reference")
        real = components.dataset.reference(num_samples, ref_seed)
        options = metric_options_on(run.config, run.registry, loaded.device)
        for name, values in (metric_overrides or {}).items():
            options[name] = {**options.get(name, {}), **values}
        metadata: dict[str, Any] = {}
        values = metric_values(run.registry, metrics, samples, real, options,
                               heldout_inputs(run.config, components, model), metadata,
                               generated_labels(model, num_samples),
                               reference_labels(components.dataset, num_samples, ref_seed))
    except (DiffctlError, OSError, ValueError, RuntimeError) as exc:
        return {"checkpoint": checkpoint, "error": _one_line(exc)}
    row = {"checkpoint": checkpoint, "epoch": loaded.state["epoch"],
           "step": loaded.state["step"], **values,
           "seconds": round(time.perf_counter() - started, 3)}
    if metadata:
        row["metric_metadata"] = metadata
    if keep:
        row[KEPT] = samples[:keep].numpy()
    return row


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and isinstance(exc, DiffctlError) else \
        f"{type(exc).__name__}: {text[0] if text else ''}"


def prepare_references(run_dir: Path, metrics: list[str], num_samples: int, seed: int,
                       folder: str | Path | None = None
                       ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Let each metric that can prepare its real side do it now, once.

    Returns ``(sources, overrides)``: ``{metric: computed | cache | none}`` for the metrics
    that have ``prepare_reference``, and the option overrides under which workers use the
    prepared result (non-empty only for reference files written into ``folder``, i.e. metrics
    with ``cache: false``). Only the dataset is built, to draw the real sample the workers
    draw.
    """
    from diffctl.runs.components import build_dataset
    from diffctl.runs.run import Run
    from diffctl.seeds import stream_seed

    run = Run.open(run_dir)
    sources: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    real = None
    for name in metrics:
        metric = run.registry.create("metric", name, run.config.eval.metric_options.get(name))
        if not hasattr(metric, "prepare_reference"):
            continue
        if real is None:
            dataset = build_dataset(run.config, run.registry)
            real = dataset.reference(num_samples, stream_seed(seed, "reference"))
        sources[name], options = metric.prepare_reference(real, folder)
        if options:
            overrides[name] = options
    return sources, overrides


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


def assign_devices(checkpoints: list[str], devices: list[str] | None,
                   device: str | None = None) -> dict[str, str | None]:
    """The device of each checkpoint: round-robin over ``devices`` (``cuda:0,cuda:1``), so
    ``--workers N`` spreads over them; else ``device`` (None: the run's train.device)."""
    if not devices:
        return dict.fromkeys(checkpoints, device)
    return {c: devices[i % len(devices)] for i, c in enumerate(checkpoints)}


def evaluate_checkpoints(run_dir: Path, checkpoints: list[str], metrics: list[str],
                         num_samples: int, num_steps: int, seed: int, workers: int = 1,
                         device: str | None = None, threads: int | None = None,
                         on_progress: Callable[[int, int], None] | None = None,
                         devices: list[str] | None = None,
                         keep: int = 0,
                         on_samples: Callable[[str, Any], None] | None = None,
                         task: Callable[..., dict[str, Any]] | None = None
                         ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Evaluate ``checkpoints`` of ``run_dir`` with ``workers`` processes on ``device``
    (default: the run's train.device) or round-robin over ``devices``, each process using
    ``threads`` threads (default: its share of the cores). Returns (rows in epoch order,
    failures); ``on_progress(done, total)`` after each checkpoint; ``on_samples(checkpoint,
    array)`` with the first ``keep`` samples of each checkpoint evaluated. ``task`` replaces
    :func:`evaluate_checkpoint` (a module-level function with its arguments; tests)."""
    task = task or evaluate_checkpoint
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    total = len(checkpoints)
    done = 0
    rows: list[dict[str, Any]] = []

    def finished(row: dict[str, Any]) -> None:
        nonlocal done
        samples = row.pop(KEPT, None)
        if samples is not None and on_samples is not None:
            on_samples(row["checkpoint"], samples)
        rows.append(row)
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    with tempfile.TemporaryDirectory(prefix="diffctl-sweep-") as folder:
        _, overrides = prepare_references(run_dir, metrics, num_samples, seed, folder)
        placed = assign_devices(checkpoints, devices, device)
        args = {c: (str(run_dir), c, metrics, num_samples, num_steps, seed, threads, True,
                    overrides, placed[c], keep) for c in checkpoints}
        if workers == 1:
            for c in checkpoints:
                finished(task(*args[c]))
        else:
            lost = _pool_round(task, list(checkpoints), args, workers, threads, finished)
            if lost:  # a dead worker takes the pool's pending work with it: retry each alone
                log.warning("a worker process died while evaluating %s; trying each once "
                            "more on its own", ", ".join(lost))
            for c in lost:
                if _pool_round(task, [c], args, 1, threads, finished):
                    finished({"checkpoint": c, "error": "its worker process died twice "
                              "(out of memory or killed?)"})
    failures = [r for r in rows if "error" in r]
    good = sorted((r for r in rows if "error" not in r), key=lambda r: r["epoch"])
    return good, [{"checkpoint": r["checkpoint"], "error": r["error"]} for r in failures]


def _pool_round(task: Callable[..., dict[str, Any]], pending: list[str],
                args: dict[str, tuple], workers: int, threads: int,
                finished: Callable[[dict[str, Any]], None]) -> list[str]:
    """Run ``pending`` checkpoints in one process pool; returns those lost to a dead worker."""
    ctx = mp.get_context("spawn")
    lost: list[str] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(task, *args[c]): c for c in pending}
        for future in as_completed(futures):
            try:
                finished(future.result())
            except BrokenProcessPool:
                lost.append(futures[future])
    return lost
