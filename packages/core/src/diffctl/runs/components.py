"""Composition: build a run's dataset, denoiser, scheduler and sampler from its config.

Every check that relates two components (denoiser vs data shape, classes, guidance) happens
here, before any training, as one-line errors. The model's initial weights come from the
run's ``init`` stream and the dataset's data from its ``data`` stream when the dataset config
leaves ``seed`` null (:mod:`diffctl.seeds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs.config import RunConfig
from diffctl.runs.resources import check_model, memory_errors, parameter_count
from diffctl.seeds import stream_seed


@dataclass
class Components:
    dataset: Any
    denoiser: torch.nn.Module
    scheduler: Any
    sampler: Any

    @property
    def images(self) -> bool:
        return len(self.dataset.sample_shape) == 3


def num_classes(model: Any) -> int | None:
    """Classes a denoiser is conditioned on (None: unconditional)."""
    return getattr(model, "num_classes", None) or None


def fit_denoiser_to_data(options: dict[str, Any], denoiser: str, dataset: Any,
                         dataset_name: str, guidance_scale: float = 1.0) -> dict[str, Any]:
    """Check a denoiser config against the dataset and fill the shape fields left empty.

    Vector denoisers declare ``data_dim``, image denoisers ``in_channels`` / ``image_size``
    (null: taken from the dataset). Every mismatch is a one-line error before any training.
    """
    shape = tuple(dataset.sample_shape)
    options = dict(options)
    if "data_dim" in options:
        if len(shape) != 1:
            raise UsageError(f"denoiser '{denoiser}' works on vectors but dataset "
                             f"'{dataset_name}' has samples shaped {shape}; use an image "
                             "denoiser (e.g. unet-mini or dit)")
        if options["data_dim"] != shape[0]:
            raise UsageError(f"denoiser data_dim {options['data_dim']} does not match the "
                             f"dataset's sample shape {shape}")
    if "in_channels" in options:
        if len(shape) != 3:
            raise UsageError(f"denoiser '{denoiser}' works on images but dataset "
                             f"'{dataset_name}' has samples shaped {shape}")
        channels, height, width = shape
        if options["in_channels"] not in (None, channels):
            raise UsageError(f"channel mismatch: denoiser '{denoiser}' has in_channels "
                             f"{options['in_channels']} but dataset '{dataset_name}' has "
                             f"{channels}")
        if height != width:
            raise UsageError(f"dataset '{dataset_name}' has {height}x{width} images; the "
                             "image denoisers need square images")
        if options.get("image_size") not in (None, height):
            raise UsageError(f"denoiser '{denoiser}' has image_size {options['image_size']} "
                             f"but dataset '{dataset_name}' has {height}x{width} images")
        options["in_channels"], options["image_size"] = channels, height
    classes = options.get("num_classes")
    if classes:
        if not getattr(dataset, "num_classes", None):
            raise UsageError(f"class conditioning (denoiser num_classes={classes}) needs "
                             f"labels, and dataset '{dataset_name}' has none")
        if classes != dataset.num_classes:
            raise UsageError(f"denoiser num_classes {classes} but dataset '{dataset_name}' "
                             f"has {dataset.num_classes} classes")
    check_guidance(guidance_scale, classes)
    return options


def check_guidance(guidance_scale: float, classes: int | None) -> None:
    """Classifier-free guidance needs a class-conditional denoiser."""
    if guidance_scale != 1.0 and not classes:
        raise UsageError(f"guidance_scale {guidance_scale} needs a class-conditional "
                         "denoiser (set denoiser.num_classes)")


def build_dataset(config: RunConfig, registry: Registry | None = None) -> Any:
    """The run's dataset; a config ``seed`` left null takes the run's ``data`` stream."""
    registry = registry or get_registry()
    options = config.dataset.options()
    spec = registry.get("dataset", config.dataset.name)
    if "seed" in spec.config.model_fields and options.get("seed") is None:
        options["seed"] = stream_seed(config.seed, "data")
    with memory_errors(f"dataset '{config.dataset.name}'", "the dataset's size (e.g. "
                       "dataset.n or dataset.limit)"):
        return spec.create(options)


def build_sampler(name: str, options: dict[str, Any], model: Any,
                  registry: Registry | None = None) -> Any:
    """A sampler for ``model``; guidance is checked against the model's classes."""
    registry = registry or get_registry()
    sampler = registry.create("sampler", name, options)
    check_guidance(float(getattr(sampler.config, "guidance_scale", 1.0)), num_classes(model))
    return sampler


def build(config: RunConfig, registry: Registry | None = None,
          dataset: Any = None) -> Components:
    """Instantiate the four components of a resolved config (seeded model init). ``dataset``
    reuses an already built dataset of this config."""
    registry = registry or get_registry()
    dataset = dataset if dataset is not None else build_dataset(config, registry)
    scheduler = registry.create("scheduler", config.scheduler.name, config.scheduler.options())
    sampler_options = config.sampler.options()
    options = fit_denoiser_to_data(config.denoiser.options(), config.denoiser.name, dataset,
                                   config.dataset.name,
                                   float(sampler_options.get("guidance_scale", 1.0)))
    if "num_train_timesteps" in options:
        options["num_train_timesteps"] = scheduler.num_train_timesteps
    spec = registry.get("denoiser", config.denoiser.name)
    check_model(parameter_count(lambda: spec.create(options)), config.denoiser.name)
    torch.manual_seed(stream_seed(config.seed, "init"))
    with memory_errors(f"denoiser '{config.denoiser.name}'", "the denoiser's size"):
        denoiser = spec.create(options)
    sampler = registry.create("sampler", config.sampler.name, sampler_options)
    return Components(dataset, denoiser, scheduler, sampler)
