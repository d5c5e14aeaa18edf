"""Metrics of a run and their real-vs-real floors (docs/design.md, "Metric floors").

Sample metrics compare generated samples with an independent real sample; model metrics
(``test-loss``) score the denoiser on the held-out split; paired metrics (psnr, ssim, lpips)
compare reconstructions with their originals. What a metric is comes from its registered
metadata (:class:`diffctl.component_info.MetricInfo`), so nothing here builds a metric only to
ask it a question. Metrics that read image features share one feature store per evaluation
(a forward pass per image set, not per metric).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffctl.errors import UsageError
from diffctl.registry import Registry
from diffctl.runs import directory as files
from diffctl.runs.components import Components, num_classes
from diffctl.runs.config import RunConfig
from diffctl.runs.directory import RunDirectory
from diffctl.runs.sampling import generate
from diffctl.samplers.base import Trajectory
from diffctl.seeds import stream_seed


@dataclass
class ModelInputs:
    """What a model metric (``test-loss``) scores: the denoiser on held-out data."""

    model: torch.nn.Module
    scheduler: Any
    data: torch.Tensor
    labels: torch.Tensor | None = None
    seed: int = 0


def split_labels(dataset: Any, split: str) -> torch.Tensor:
    """Class labels of a dataset split, or one error when it has none."""
    getter = getattr(dataset, f"{split}_labels", None)
    labels = getter() if getter is not None else None
    if labels is None:
        raise UsageError(f"dataset {dataset!r} has no {split} labels for class conditioning")
    return labels


def heldout_inputs(config: RunConfig, components: Components,
                   model: torch.nn.Module) -> ModelInputs:
    """The held-out split (and labels for a conditional model) that model metrics score."""
    ds = components.dataset
    labels = split_labels(ds, "test") if num_classes(model) is not None else None
    return ModelInputs(model, components.scheduler, ds.test_tensor(), labels,
                       stream_seed(config.seed, "heldout"))


def plain(value: Any) -> Any:
    """JSON-safe copy of a metadata value (tuples to lists, tensors and numbers to floats)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


Progress = Callable[[int, int], None] | None
#: ``on_stage(stage, done, total)``: progress of the secondary long operations, ``floors``
#: (real-vs-real draws) and ``features`` (images through a feature extractor).
StageProgress = Callable[[str, int, int], None] | None


def bind_stage(on_stage: StageProgress, name: str) -> Progress:
    """``on_stage`` bound to one stage, as a plain ``(done, total)`` callback."""
    if on_stage is None:
        return None
    return lambda done, total: on_stage(name, done, total)


def with_progress(metric: Any, on_progress: Progress) -> Any:
    """Hand ``on_progress(done, total)`` to a metric that reports the progress of its feature
    extraction (it has an ``on_progress`` attribute, docs/plugins.md); others are unchanged."""
    if on_progress is not None and hasattr(metric, "on_progress"):
        metric.on_progress = on_progress
    return metric


def metric_values(registry: Registry, names: list[str], generated: torch.Tensor | None,
                  real: torch.Tensor | None, options: dict[str, dict[str, Any]] | None = None,
                  model_inputs: ModelInputs | None = None,
                  metadata: dict[str, Any] | None = None, labels: torch.Tensor | None = None,
                  real_labels: torch.Tensor | None = None,
                  on_features: Progress = None) -> dict[str, float]:
    """Values of the named metrics: sample (and paired) metrics on (generated, real), model
    metrics on ``model_inputs``. A metric that leaves a ``metadata`` dict (extractor, weights
    hash, counts) has it copied into ``metadata[name]`` when a dict is passed. Metrics that
    declare they need a feature extractor or classifier are called with ``features=``, a dict
    they may keep image features in for the others (docs/plugins.md); metrics that need
    ``labels`` get ``labels=`` (the class each generated sample was generated for) and
    ``real_labels=`` (the classes of the real sample, None when unknown). ``on_features(done,
    total)`` follows long feature extractions (images) of the metrics that report them."""
    values: dict[str, float] = {}
    features: dict[Any, Any] = {}  # image features shared by the metrics of this evaluation
    for name in names:
        info = registry.metric_info(name)
        metric = with_progress(registry.create("metric", name, (options or {}).get(name)),
                               on_features)
        if info.input == "model":
            if model_inputs is None:
                raise UsageError(f"metric '{name}' scores a model; it cannot be computed "
                                 "from samples alone here")
            m = model_inputs
            result = metric.score_model(m.model, m.scheduler, m.data, m.labels, seed=m.seed)
        else:
            extra: dict[str, Any] = {}
            if {"feature-extractor", "classifier"} & set(info.needs):
                extra["features"] = features
            if "labels" in info.needs:
                extra |= {"labels": labels, "real_labels": real_labels}
            result = metric(generated, real, **extra)
        values.update({k: float(v) for k, v in result.items()})
        if metadata is not None and getattr(metric, "metadata", None):
            metadata[name] = plain(metric.metadata)
    return values


def generated_labels(model: torch.nn.Module, n: int) -> torch.Tensor | None:
    """The classes of ``n`` samples drawn with the default labels (sample i has class
    i mod num_classes, :func:`diffctl.runs.sampling.class_labels`); None for an
    unconditional model."""
    from diffctl.runs.sampling import class_labels

    return class_labels(model, 0, n, torch.device("cpu"))


def reference_labels(dataset: Any, n: int, seed: int) -> torch.Tensor | None:
    """Labels of the real sample ``dataset.reference(n, seed)``, None when it has none."""
    getter = getattr(dataset, "reference_labels", None)
    return getter(n, seed) if getter is not None else None


def metric_options_on(config: RunConfig, registry: Registry,
                      device: torch.device | str) -> dict[str, dict[str, Any]]:
    """The run's ``eval.metric_options`` with ``device: auto`` replaced by the run's device,
    for the metrics that have a ``device`` field (fid, kid, isc, prc, lpips): a CPU run on a
    GPU machine computes its metrics on the CPU too."""
    options = {name: dict(values) for name, values in config.eval.metric_options.items()}
    for name, values in options.items():
        spec = registry.get("metric", name)
        if "device" in spec.config.model_fields and values.get("device", "auto") == "auto":
            values["device"] = str(device)
    return options


def metric_floors(registry: Registry, names: list[str], options: dict[str, dict[str, Any]],
                  dataset: Any, n: int, draws: int, seed: int, on_progress: Progress = None,
                  on_features: Progress = None) -> dict[str, dict[str, Any]]:
    """Real-vs-real floors (mean, p95, values) of the sample metrics among ``names`` at sample
    size ``n``, drawn from the ``floors`` stream of run seed ``seed``; model and paired
    metrics have none. A zero-centred estimator's floor is marked so ("within k x of the
    floor" means below k x p95 there) and has at least ``ZERO_CENTRED_DRAWS`` draws with a
    normal-quantile p95 (:mod:`diffctl.evaluation.floor`). A metric that needs labels gets
    a real labelled draw as its generated side (with the draw's labels as ``labels``).
    ``on_progress(done, total)`` after each draw, counted over all the metrics' draws;
    ``on_features`` as in :func:`metric_values`."""
    from diffctl.evaluation.floor import ZERO_CENTRED_DRAWS, metric_floor

    floors: dict[str, dict[str, Any]] = {}
    sample_metrics = [m for m in names if registry.metric_info(m).input == "samples"]
    counts = [max(draws, ZERO_CENTRED_DRAWS) if registry.metric_info(m).zero_centred else draws
              for m in sample_metrics]
    total, starts = sum(counts), [sum(counts[:i]) for i in range(len(counts))]
    for i, name in enumerate(sample_metrics):
        info = registry.metric_info(name)
        metric = with_progress(registry.create("metric", name, options.get(name)),
                               on_features)
        pair = None
        if "labels" in info.needs:
            metric, reference = _labelled_floor(name, metric, dataset)
        else:
            # a finite dataset gives two samples that share no image
            reference, pair = dataset.reference, getattr(dataset, "reference_pair", None)
        step = None if on_progress is None else (
            lambda done, _draws, base=starts[i]: on_progress(base + done, total))
        # a zero-centred estimator is compared with its p95, read from more draws
        found = metric_floor(metric, reference, n, draws=draws,
                             seed=stream_seed(seed, "floors"), on_progress=step,
                             zero_centred=(name,) if info.zero_centred else (), pair=pair)
        floors.update(found)
    return floors


def final_metric_names(config: RunConfig) -> list[str]:
    """The metrics of a run's final evaluation: ``eval.metrics`` and test-loss."""
    return list(dict.fromkeys([*config.eval.metrics, "test-loss"]))


def final_floors(config: RunConfig, registry: Registry, dataset: Any,
                 device: torch.device | str, on_stage: StageProgress = None
                 ) -> dict[str, dict[str, Any]]:
    """The floors of a run's final evaluation: its metrics at ``sample.num_samples`` with
    ``eval.floor_draws`` draws from run seed ``config.seed``. The one definition the final
    evaluation and the floor process of :mod:`diffctl.runs.floor_prefetch` share, so a
    prefetched floor is the floor the evaluation would have computed."""
    return metric_floors(registry, final_metric_names(config),
                         metric_options_on(config, registry, device), dataset,
                         config.sample.num_samples, config.eval.floor_draws, config.seed,
                         on_progress=bind_stage(on_stage, "floors"),
                         on_features=bind_stage(on_stage, "features"))


def _labelled_floor(name: str, metric: Any, dataset: Any) -> tuple[Any, Any]:
    """(metric, reference) for the floor of a metric that needs labels: the generated side is
    a real labelled draw, its labels standing for the classes asked for (class-accuracy's
    floor is then the classifier's accuracy on real images)."""
    def reference(n: int, seed: int) -> tuple[Any, Any]:
        labels = reference_labels(dataset, n, seed)
        if labels is None:
            raise UsageError(f"metric '{name}' needs class labels for its floor, and dataset "
                             f"{dataset!r} has none")
        return dataset.reference(n, seed), labels

    def labelled(generated: tuple[Any, Any], real: tuple[Any, Any]) -> dict[str, float]:
        return metric(generated[0], real[0], labels=generated[1], real_labels=real[1])

    return labelled, reference


def check_sample_count(dataset: Any, n: int, what: str = "samples") -> None:
    """A metric evaluation needs at least 2 samples and as many real ones as the data has."""
    if n < 2:
        raise UsageError(f"metrics need at least 2 {what}, got {n}")
    dataset.reference(n, 0)  # a data set too small for n real samples fails here, not later


@torch.no_grad()
def reconstruction_values(config: RunConfig, components: Components, model: torch.nn.Module,
                          registry: Registry) -> dict[str, Any]:
    """Paired metrics between held-out images x0 and the model's x0 estimate from x_t.

    x_t = q_sample(x0, t, noise) at ``eval.reconstruction_t`` with noise from the run's
    ``reconstruction`` stream; the estimate is one model call converted to x0 (clamped to
    [-1, 1]). Reports PSNR/SSIM-style numbers of how well the model denoises at that level.
    """
    from diffctl.samplers.base import DenoiserCall

    cfg = config.eval
    data = components.dataset.test_tensor()[:cfg.reconstruction_examples]
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(stream_seed(config.seed, "reconstruction"))
    t = min(cfg.reconstruction_t, components.scheduler.num_train_timesteps - 1)
    alpha_bar = float(components.scheduler.alphas_cumprod[t])
    labels = split_labels(components.dataset, "test")[:len(data)] \
        if num_classes(model) is not None else None
    call = DenoiserCall(model, clip_denoised=1.0)
    estimates = []
    for start in range(0, len(data), 250):
        x0 = data[start:start + 250].to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        x_t = alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise
        call.cond = labels[start:start + 250].to(device) if labels is not None else None
        estimates.append(call(x_t, t, alpha_bar)[0].cpu())
    metadata: dict[str, Any] = {}
    values = metric_values(registry, cfg.reconstruction_metrics, torch.cat(estimates), data,
                           metric_options_on(config, registry, device), metadata=metadata)
    return {"t": t, "examples": len(data), "metrics": values, "metric_metadata": metadata}


def floor_ratio(value: float, floor: dict[str, Any]) -> tuple[float | None, str]:
    """How far a value sits from its floor: value / mean, or value / p95 for zero-centred
    estimators (their mean is ~0). Returns (ratio, label); ratio None when undefined."""
    if floor.get("zero_centred"):
        p95 = floor.get("p95", 0.0)
        return (value / p95, "x p95") if p95 > 0 else (None, "")
    mean = floor.get("mean", 0.0)
    return (value / mean, "") if mean > 0 else (None, "")


def summarize_floors(values: dict[str, float], floors: dict[str, dict[str, Any]]
                     ) -> dict[str, dict[str, Any]]:
    """Each value next to its floor's mean, p95 and ratio (for reports and tables)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        floor = floors.get(name)
        row: dict[str, Any] = {"value": value}
        if floor:
            ratio, label = floor_ratio(value, floor)
            row |= {"floor_mean": floor["mean"], "floor_p95": floor["p95"], "ratio": ratio,
                    "ratio_of": "p95" if label else "mean"}
        rows[name] = row
    return rows


def final_evaluation(config: RunConfig, components: Components, model: torch.nn.Module,
                     registry: Registry, directory: RunDirectory, batch_size: int,
                     on_progress: Progress = None, on_stage: StageProgress = None,
                     floors: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The final evaluation of a trained model: ``sample.num_samples`` samples from the run's
    ``sample`` stream, every metric against a real sample of its ``reference`` stream with its
    floor, test-loss, the reconstruction metrics. Writes samples.npy, real.npy and
    trajectory.npz (10 states from x_T to x_0) into ``directory``; returns the report's
    ``eval`` section. ``on_stage(stage, done, total)`` follows floors and feature extraction.
    ``floors``: the floors already computed (:mod:`diffctl.runs.floor_prefetch`)."""

    cfg = config.sample
    # for images 10 samples along the 10 states make the 10x10 progression grid
    keep = min(cfg.progression_samples, 10) if components.images else cfg.progression_samples
    traj = Trajectory(frames=10) if keep else None
    t0 = time.perf_counter()
    samples = generate(components, model, cfg.num_samples, cfg.num_steps,
                       stream_seed(config.seed, "sample"), batch_size, traj,
                       on_progress=on_progress)
    sample_seconds = time.perf_counter() - t0
    ref_seed = stream_seed(config.seed, "reference")
    real = components.dataset.reference(cfg.num_samples, ref_seed)
    options = metric_options_on(config, registry, next(model.parameters()).device)
    # the model used for sampling also gets the final held-out loss
    names = final_metric_names(config)
    metadata: dict[str, Any] = {}
    values = metric_values(registry, names, samples, real, options,
                           heldout_inputs(config, components, model), metadata,
                           generated_labels(model, cfg.num_samples),
                           reference_labels(components.dataset, cfg.num_samples, ref_seed),
                           on_features=bind_stage(on_stage, "features"))
    result: dict[str, Any] = {"num_samples": cfg.num_samples, "sample_seconds": sample_seconds,
                              "metrics": values, "floors": {}, "metric_metadata": metadata}
    k = num_classes(model)
    if k is not None:
        result["labels"] = f"sample i has class i mod {k}"
    if config.eval.floor_draws and floors is not None:
        result["floors"] = floors
    elif config.eval.floor_draws:
        result["floors"] = final_floors(config, registry, components.dataset,
                                        next(model.parameters()).device, on_stage)
    if config.eval.reconstruction_metrics:
        result["reconstruction"] = reconstruction_values(config, components, model, registry)
    np.save(directory.file(files.SAMPLES), samples.numpy())
    np.save(directory.file(files.REAL), real.numpy())
    if traj is not None and traj.xs:
        np.savez(directory.file(files.TRAJECTORY), timesteps=np.array(traj.timesteps),
                 xs=np.stack([x[:keep].numpy() for x in traj.xs]),
                 x0s=np.stack([x[:keep].numpy() for x in traj.x0s]))
    return result
