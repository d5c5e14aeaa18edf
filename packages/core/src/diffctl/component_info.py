"""What a component declares about itself when it is registered, beside its config.

``registry.add(kind, name, factory=..., config=..., summary=..., **info)`` takes these fields
as keywords; they are validated by the model of the kind below and kept on the
:class:`~diffctl.registry.ComponentSpec`. Reading them never imports or builds the component,
so config validation, ``compare`` and reports can ask "which way is better?" or "can this
metric measure this data?" at no cost (docs/design.md, "Component metadata").

Data kinds: ``points`` (vectors, shape (D,)) and ``images`` ((C, H, W) in [-1, 1]).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffctl.config import validation_message
from diffctl.errors import ConfigError

DataKind = Literal["points", "images"]
DATA_KINDS: tuple[str, ...] = ("points", "images")

#: What a metric can need beyond generated and real samples.
#: ``feature-extractor``: image features from a feature-extractor component (fid, kid, ...);
#: ``classifier``: a classifier's predictions (class-accuracy, isc);
#: ``labels``: the class label each sample was generated for (a class-conditional run);
#: ``modes``: the mixture modes of the data, from the dataset config or the metric options.
Need = Literal["feature-extractor", "classifier", "labels", "modes"]


class ComponentInfo(BaseModel):
    """Base of the per-kind metadata models: strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricInfo(ComponentInfo):
    """A metric's direction, noise model and the data it can measure."""

    higher_is_better: bool = Field(False, description="Whether a larger headline is better.")
    zero_centred: bool = Field(
        False, description="An unbiased estimator whose value on two samples of one "
        "distribution is centred on 0 (unbiased MMD², KID): it can be negative, and its floor "
        "is read at the 95th percentile.")
    data: tuple[DataKind, ...] = Field(DATA_KINDS, description="Data kinds it measures.")
    input: Literal["samples", "pairs", "model"] = Field(
        "samples", description="samples: generated vs an independent real sample; pairs: "
        "image i against image i (reconstructions, inpainting); model: the denoiser itself "
        "on held-out data (test-loss).")
    needs: tuple[Need, ...] = Field((), description="What it needs beyond the samples.")
    default_for: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Dataset names or data kinds whose runs evaluate this metric when the "
        "config names none, with the options to use there.")


class DatasetInfo(ComponentInfo):
    """The kind of data a dataset yields and what a run on it does by default."""

    data: DataKind
    default: bool = Field(False, description="The default dataset of its data kind.")
    default_metrics: tuple[str, ...] = Field(
        (), description="Metrics of the dataset's own package evaluated by default.")
    recipe: dict[str, Any] = Field(
        default_factory=dict, description="Run-config sections applied when no config file "
        "is given (sample counts, metric options).")
    provides: tuple[Need, ...] = Field(
        (), description="Needs of metrics this dataset satisfies (gmm-ring: modes).")


class DenoiserInfo(ComponentInfo):
    """The data a denoiser works on, whether it is a default, and its CPU-sized recipes."""

    data: tuple[DataKind, ...]
    default: bool = Field(False, description="The default denoiser of its data kinds.")
    recipe: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Run-config sections by dataset name or data kind, "
        "applied when no config file is given: a run that finishes in minutes on a CPU.")
    size_field: str | None = Field(
        None, description="Config field that scales the width (0, 1] (size studies).")
    student: str | None = Field(
        None, description="A width-scalable denoiser of the same family (one with a "
        "size_field) that size studies train as this denoiser's students; its config takes "
        "this denoiser's options (unet-mini: student-unet).")


#: The metadata model of each kind that has one; other kinds take no metadata.
INFO_MODELS: dict[str, type[ComponentInfo]] = {
    "metric": MetricInfo,
    "dataset": DatasetInfo,
    "denoiser": DenoiserInfo,
}


def make_info(kind: str, name: str, values: dict[str, Any]) -> ComponentInfo | None:
    """Validate the metadata keywords of one registration (None when there are none)."""
    model = INFO_MODELS.get(kind)
    if model is None:
        if values:
            raise ConfigError(f"{kind} '{name}': components of kind {kind!r} take no "
                              f"metadata (got {', '.join(sorted(values))})")
        return None
    if not values:
        return None
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, f"{kind} '{name}' metadata")) from None


def data_kind(sample_shape: tuple[int, ...]) -> str:
    """The data kind of a sample shape: (D,) points, (C, H, W) images."""
    return "points" if len(sample_shape) == 1 else "images"
